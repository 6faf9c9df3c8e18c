"""Reads for billing: who a bill applies to, each member's status, per-bill counts.

Every queryset here is scoped to one estate by construction: it starts from an
:class:`~levy.estates.access.EstateAccess`, a bill (which carries its estate), or a
membership.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import IsNull
from django.utils import timezone

from levy.billing.models import Bill, BillAcknowledgement, BillCounter, BillDispute, DisputeStatus
from levy.billing.status import BillStatus, MemberBillFacts, can_pay, derive_status, status_case
from levy.common.db import column, db_value, fetch_one, model_columns, model_from_row, table
from levy.common.errors import NotFoundError, RuleViolation
from levy.common.money import DECIMAL_PLACES, MAX_DIGITS
from levy.estates.access import EstateAccess, parse_uuid
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionStatus, TransactionType

if TYPE_CHECKING:
    from levy.accounts.models import User

MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
ZERO = Decimal("0.00")


def estate_today() -> datetime.date:
    """The estate calendar's date (settings.TIME_ZONE); the one clock for due dates."""
    return timezone.localdate()


# --- who a bill applies to ------------------------------------------------------------


def billable_memberships(cluster_id: Any) -> QuerySet[Membership]:
    """Only active resident memberships are billed."""
    return Membership.objects.filter(cluster_id=cluster_id, active=True, is_resident=True)


def bill_audience(bill: Bill) -> QuerySet[Membership]:
    """The memberships ``bill`` applies to."""
    memberships = billable_memberships(bill.cluster_id)
    if bill.user_id is not None:
        return memberships.filter(user_id=bill.user_id)
    return memberships.filter(joined_at__lte=bill.created_at)


def _audience_of_outer_bill(prefix: str = "") -> Q:
    """Memberships that the bill of the enclosing query (``OuterRef``) applies to."""
    p = prefix

    def outer(name: str) -> OuterRef:
        return OuterRef(OuterRef(name)) if p else OuterRef(name)

    return Q(**{f"{p}cluster_id": outer("cluster_id"), f"{p}active": True, f"{p}is_resident": True}) & (
        Q(IsNull(outer("user_id"), True), **{f"{p}joined_at__lte": outer("created_at")})
        | Q(**{f"{p}user_id": outer("user_id")})
    )


def bills_applying_to(membership: Membership) -> QuerySet[Bill]:
    """The bills that apply to one member: estate-wide ones issued since they joined,
    and their own."""
    if not (membership.active and membership.is_resident):
        return Bill.objects.none()
    return Bill.objects.filter(cluster_id=membership.cluster_id).filter(
        Q(user_id=membership.user_id) | Q(user__isnull=True, created_at__gte=membership.joined_at)
    )


def bill_applies_to(*, bill: Bill, user: User) -> bool:
    return bill_audience(bill).filter(user_id=user.pk).exists()


# --- facts and status, for one member ------------------------------------------------


def _paid(bill_ref: Any, user_ref: Any) -> Exists:
    return Exists(
        Transaction.objects.filter(
            bill_id=bill_ref, payer_id=user_ref, type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED
        )
    )


def _dispute(bill_ref: Any, user_ref: Any, status: str) -> Exists:
    return Exists(BillDispute.objects.filter(bill_id=bill_ref, user_id=user_ref, status=status))


def _acknowledged(bill_ref: Any, user_ref: Any) -> Exists:
    return Exists(BillAcknowledgement.objects.filter(bill_id=bill_ref, user_id=user_ref))


@functools.cache
def _read_facts_sql(vendor: str, estate_wide: bool) -> str:
    m, t, d, a = Membership, Transaction, BillDispute, BillAcknowledgement
    # The audience rule of ``bill_audience``: active resident members; for an
    # estate-wide bill those who joined by its creation, else the bill's own member.
    audience = f"{column(m, 'joined_at')} <= %(created)s" if estate_wide else f"{column(m, 'user')} = %(bill_user)s"
    return (
        "SELECT "  # noqa: S608 - identifiers from the models, values are parameters
        f"EXISTS (SELECT 1 FROM {table(m)} WHERE {column(m, 'cluster')} = %(cluster)s "
        f"AND {column(m, 'user')} = %(user)s AND {column(m, 'active')} = %(true)s "
        f"AND {column(m, 'is_resident')} = %(true)s AND {audience}), "
        f"EXISTS (SELECT 1 FROM {table(t)} WHERE {column(t, 'bill')} = %(bill)s AND {column(t, 'payer')} = %(user)s "
        f"AND {column(t, 'type')} = %(payment)s AND {column(t, 'status')} = %(completed)s), "
        f"EXISTS (SELECT 1 FROM {table(d)} WHERE {column(d, 'bill')} = %(bill)s AND {column(d, 'user')} = %(user)s "
        f"AND {column(d, 'status')} = %(upheld)s), "
        f"EXISTS (SELECT 1 FROM {table(d)} WHERE {column(d, 'bill')} = %(bill)s AND {column(d, 'user')} = %(user)s "
        f"AND {column(d, 'status')} = %(open)s), "
        f"EXISTS (SELECT 1 FROM {table(a)} WHERE {column(a, 'bill')} = %(bill)s AND {column(a, 'user')} = %(user)s)"
    )


def read_member_facts(*, bill: Bill, user: User) -> dict[str, bool]:
    """Whether the bill applies to the member, and the member's stored facts, in one
    fixed statement (the same rules as ``bill_audience``, ``_paid``, ``_dispute`` and
    ``_acknowledged``; tests compare the two forms)."""
    params = {
        "cluster": db_value(Membership, "cluster", bill.cluster_id),
        "user": db_value(Membership, "user", user.pk),
        "bill": db_value(Bill, "id", bill.pk),
        "created": db_value(Bill, "created_at", bill.created_at),
        "bill_user": db_value(Bill, "user", bill.user_id),
        "true": True,
        "payment": TransactionType.BILL_PAYMENT.value,
        "completed": TransactionStatus.COMPLETED.value,
        "upheld": DisputeStatus.UPHELD.value,
        "open": DisputeStatus.OPEN.value,
    }
    row = fetch_one(_read_facts_sql(connection.vendor, bill.user_id is None), params)
    names = ("applies", "paid", "waived", "disputed", "acknowledged")
    return {name: bool(value) for name, value in zip(names, row, strict=True)}


def member_bill_facts(*, bill: Bill, user: User, today: datetime.date | None = None) -> MemberBillFacts:
    """The stored facts for one bill and one member (one query)."""
    day = today or estate_today()
    facts = read_member_facts(bill=bill, user=user)
    return MemberBillFacts(
        cancelled=bill.cancelled_at is not None,
        paid=facts["paid"],
        waived=facts["waived"],
        disputed=facts["disputed"],
        past_due=day > bill.due_date,
        acknowledged=facts["acknowledged"],
    )


def bill_status_for(*, bill: Bill, user: User, today: datetime.date | None = None) -> BillStatus:
    return derive_status(member_bill_facts(bill=bill, user=user, today=today))


def member_bills(*, membership: Membership, today: datetime.date | None = None) -> QuerySet[Any]:
    """One member's bills, each annotated in the same query with ``status``,
    ``acknowledged_at``, ``paid_at`` and ``can_pay`` (the SQL side of the derivation)."""
    day = today or estate_today()
    user_id = membership.user_id
    bill = OuterRef("pk")
    return (
        bills_applying_to(membership)
        .select_related("cluster")
        .annotate(
            f_paid=_paid(bill, user_id),
            f_waived=_dispute(bill, user_id, DisputeStatus.UPHELD),
            f_disputed=_dispute(bill, user_id, DisputeStatus.OPEN),
            f_acknowledged=_acknowledged(bill, user_id),
        )
        .annotate(
            status=status_case(
                {
                    "cancelled": Q(cancelled_at__isnull=False),
                    "paid": Q(f_paid=True),
                    "waived": Q(f_waived=True),
                    "disputed": Q(f_disputed=True),
                    "past_due": Q(due_date__lt=day),
                    "acknowledged": Q(f_acknowledged=True),
                }
            ),
            acknowledged_at=Subquery(
                BillAcknowledgement.objects.filter(bill_id=bill, user_id=user_id).values("acknowledged_at")[:1]
            ),
            paid_at=Subquery(
                Transaction.objects.filter(
                    bill_id=bill,
                    payer_id=user_id,
                    type=TransactionType.BILL_PAYMENT,
                    status=TransactionStatus.COMPLETED,
                ).values("created_at")[:1]
            ),
            can_pay=Case(
                When(
                    Q(cancelled_at__isnull=True, f_paid=False, f_waived=False, f_disputed=False, f_acknowledged=True)
                    & (Q(due_date__gte=day) | Q(allow_payment_after_due=True)),
                    then=Value(True),
                ),
                default=Value(False),
                output_field=BooleanField(),
            ),
        )
        .order_by("-created_at", "-id")
    )


@functools.cache
def _page_facts_sql(vary: str) -> str:
    """One member's facts for a page of bills (``vary="bill"``), or a page of members'
    facts for one bill (``vary="user"``): the page's ids come as ``%(page)s``, the fixed
    side as ``%(fixed)s``."""
    t, d, a = Transaction, BillDispute, BillAcknowledgement
    bill, user = ("page.id", "%(fixed)s") if vary == "bill" else ("%(fixed)s", "page.id")

    def dispute(status: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {table(d)} WHERE {column(d, 'bill')} = {bill} "  # noqa: S608 - identifiers from the models
            f"AND {column(d, 'user')} = {user} AND {column(d, 'status')} = {status})"
        )

    latest_dispute = (
        f"(SELECT {column(d, 'id')} FROM {table(d)} WHERE {column(d, 'bill')} = {bill} "  # noqa: S608
        f"AND {column(d, 'user')} = {user} ORDER BY {column(d, 'created_at')} DESC LIMIT 1)"
    )
    return (
        f"SELECT page.id, ack.{column(a, 'acknowledged_at')}, paid.{column(t, 'created_at')}, "  # noqa: S608
        f"{dispute('%(upheld)s')}, {dispute('%(open)s')}, {latest_dispute if vary == 'user' else 'NULL'} "
        "FROM unnest(%(page)s::uuid[]) AS page(id) "
        f"LEFT JOIN {table(a)} ack ON ack.{column(a, 'bill')} = {bill} AND ack.{column(a, 'user')} = {user} "
        # At most one completed payment per bill and member (a unique constraint).
        f"LEFT JOIN {table(t)} paid ON paid.{column(t, 'bill')} = {bill} AND paid.{column(t, 'payer')} = {user} "
        f"AND paid.{column(t, 'type')} = %(payment)s AND paid.{column(t, 'status')} = %(completed)s"
    )


@dataclass(frozen=True)
class _PageFacts:
    acknowledged_at: datetime.datetime | None
    paid_at: datetime.datetime | None
    waived: bool
    disputed: bool
    dispute_id: Any

    def facts(self, bill: Bill, day: datetime.date) -> MemberBillFacts:
        return MemberBillFacts(
            cancelled=bill.cancelled_at is not None,
            paid=self.paid_at is not None,
            waived=self.waived,
            disputed=self.disputed,
            past_due=day > bill.due_date,
            acknowledged=self.acknowledged_at is not None,
        )


def _read_page_facts(vary: str, page: list[Any], fixed: Any) -> dict[Any, _PageFacts]:
    params: dict[str, Any] = {
        "page": page,
        "fixed": fixed,
        "upheld": DisputeStatus.UPHELD.value,
        "open": DisputeStatus.OPEN.value,
        "payment": TransactionType.BILL_PAYMENT.value,
        "completed": TransactionStatus.COMPLETED.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(_page_facts_sql(vary), params)
        return {
            pk: _PageFacts(ack, paid, bool(waived), bool(disputed), dispute)
            for pk, ack, paid, waived, disputed, dispute in cursor.fetchall()
        }


def decorate_member_bills(
    bills: Sequence[Bill], *, membership: Membership, today: datetime.date | None = None
) -> Sequence[Bill]:
    """Set ``status``, ``acknowledged_at``, ``paid_at`` and ``can_pay`` on a page of
    bills that apply to ``membership`` — what ``member_bills`` annotates, read for the
    page only in one fixed statement (PostgreSQL; elsewhere through ``member_bills``)."""
    if not bills:
        return bills
    day = today or estate_today()
    if connection.vendor != "postgresql":
        annotated = {
            b.pk: b for b in member_bills(membership=membership, today=day).filter(pk__in=[b.pk for b in bills])
        }
        for bill in bills:
            for name in ("status", "acknowledged_at", "paid_at", "can_pay"):
                setattr(bill, name, getattr(annotated[bill.pk], name))
        return bills
    rows = _read_page_facts("bill", [bill.pk for bill in bills], membership.user_id)
    for bill in bills:
        row = rows[bill.pk]
        facts = row.facts(bill, day)
        # The names ``member_bills`` annotates.
        setattr(bill, "status", derive_status(facts))  # noqa: B010
        setattr(bill, "acknowledged_at", row.acknowledged_at)  # noqa: B010
        setattr(bill, "paid_at", row.paid_at)  # noqa: B010
        setattr(bill, "can_pay", can_pay(facts, allow_payment_after_due=bill.allow_payment_after_due))  # noqa: B010
    return bills


def bill_member_statuses(*, bill: Bill, today: datetime.date | None = None) -> QuerySet[Any]:
    """One bill's audience, one row per member, annotated with ``status``,
    ``acknowledged_at``, ``paid_at`` and ``dispute_id``."""
    day = today or estate_today()
    member = OuterRef("user_id")
    return (
        bill_audience(bill)
        .select_related("user")
        .annotate(
            f_paid=_paid(bill.pk, member),
            f_waived=_dispute(bill.pk, member, DisputeStatus.UPHELD),
            f_disputed=_dispute(bill.pk, member, DisputeStatus.OPEN),
            f_acknowledged=_acknowledged(bill.pk, member),
        )
        .annotate(
            status=status_case(
                {
                    "cancelled": Value(bill.cancelled_at is not None, output_field=BooleanField()),
                    "paid": Q(f_paid=True),
                    "waived": Q(f_waived=True),
                    "disputed": Q(f_disputed=True),
                    "past_due": Value(day > bill.due_date, output_field=BooleanField()),
                    "acknowledged": Q(f_acknowledged=True),
                }
            ),
            acknowledged_at=Subquery(
                BillAcknowledgement.objects.filter(bill_id=bill.pk, user_id=member).values("acknowledged_at")[:1]
            ),
            paid_at=Subquery(
                Transaction.objects.filter(
                    bill_id=bill.pk,
                    payer_id=member,
                    type=TransactionType.BILL_PAYMENT,
                    status=TransactionStatus.COMPLETED,
                ).values("created_at")[:1]
            ),
            dispute_id=Subquery(
                BillDispute.objects.filter(bill_id=bill.pk, user_id=member).order_by("-created_at").values("id")[:1]
            ),
        )
        .order_by("joined_at", "id")
    )


def decorate_bill_members(
    memberships: Sequence[Membership], *, bill: Bill, today: datetime.date | None = None
) -> Sequence[Membership]:
    """Set ``status``, ``acknowledged_at``, ``paid_at`` and ``dispute_id`` on a page of
    ``bill``'s audience — what :func:`bill_member_statuses` annotates, read for the page
    only in one fixed statement (PostgreSQL; elsewhere through the annotated queryset)."""
    if not memberships:
        return memberships
    day = today or estate_today()
    names = ("status", "acknowledged_at", "paid_at", "dispute_id")
    if connection.vendor != "postgresql":
        users = [m.user_id for m in memberships]
        annotated = {m.pk: m for m in bill_member_statuses(bill=bill, today=day).filter(user_id__in=users)}
        for membership in memberships:
            for name in names:
                setattr(membership, name, getattr(annotated[membership.pk], name))
        return memberships
    rows = _read_page_facts("user", [m.user_id for m in memberships], bill.pk)
    for membership in memberships:
        row = rows[membership.user_id]
        values = (derive_status(row.facts(bill, day)), row.acknowledged_at, row.paid_at, row.dispute_id)
        for name, value in zip(names, values, strict=True):
            setattr(membership, name, value)
    return memberships


# --- counts per bill -----------------------------------------------------------------


def _count_audience(fact: Exists | None = None) -> Coalesce:
    members = Membership.objects.filter(_audience_of_outer_bill())
    if fact is not None:
        members = members.filter(fact)
    counted = members.order_by().values("cluster_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _with_derived_stats(bills: QuerySet[Any], day: datetime.date) -> QuerySet[Any]:
    return bills.annotate(
        stat_outstanding=Case(
            When(cancelled_at__isnull=False, then=Value(0)),
            default=Greatest(F("stat_eligible") - F("stat_paid") - F("stat_waived"), Value(0)),
            output_field=IntegerField(),
        ),
        stat_overdue=Case(
            When(
                Q(cancelled_at__isnull=True, due_date__lt=day),
                then=Greatest(F("stat_eligible") - F("stat_paid") - F("stat_waived") - F("stat_disputed"), Value(0)),
            ),
            default=Value(0),
            output_field=IntegerField(),
        ),
    )


def _counter_sum(field: str, output: IntegerField | DecimalField, zero: Any) -> Coalesce:
    total = (
        BillCounter.objects.filter(bill_id=OuterRef("pk"))
        .order_by()
        .values("bill_id")
        .annotate(t=Sum(field))
        .values("t")
    )
    return Coalesce(Subquery(total, output_field=output), Value(zero), output_field=output)


def bills_with_stats(bills: QuerySet[Bill], *, today: datetime.date | None = None) -> QuerySet[Any]:
    """Annotate each bill with its counts over the members it applies to:
    ``stat_eligible``, ``stat_acknowledged`` (members who acknowledged, whatever their
    status now), ``stat_paid``, ``stat_waived``, ``stat_disputed`` (open disputes),
    ``stat_overdue`` (past due and neither paid, waived nor disputed),
    ``stat_outstanding`` (members who still owe it) and ``stat_collected`` (net money
    received for it). Counts only members the bill applies to, so the status counts
    partition the audience.

    Read from the bill's counters (a few rows per bill, whatever the estate's size);
    :func:`bills_with_stats_recomputed` derives the same numbers from the facts."""
    day = today or estate_today()
    counts = IntegerField()
    return _with_derived_stats(
        bills.annotate(
            stat_eligible=_counter_sum("eligible", counts, 0),
            stat_acknowledged=_counter_sum("acknowledged", counts, 0),
            stat_paid=_counter_sum("paid", counts, 0),
            stat_waived=_counter_sum("waived", counts, 0),
            stat_disputed=_counter_sum("disputed", counts, 0),
            stat_collected=_counter_sum("collected", MONEY, ZERO),
        ),
        day,
    )


def bills_with_stats_recomputed(bills: QuerySet[Bill], *, today: datetime.date | None = None) -> QuerySet[Any]:
    """The same annotations as :func:`bills_with_stats`, counted from the facts over
    each bill's audience. Its cost grows with the estate: it is the reference the
    counters are checked against and rebuilt from, not a read path."""
    day = today or estate_today()
    bill = OuterRef(OuterRef("pk"))
    member = OuterRef("user_id")
    return _with_derived_stats(
        bills.annotate(
            stat_eligible=_count_audience(),
            stat_acknowledged=_count_audience(_acknowledged(bill, member)),
            stat_paid=_count_audience(_paid(bill, member)),
            stat_waived=_count_audience(_dispute(bill, member, DisputeStatus.UPHELD)),
            stat_disputed=_count_audience(_dispute(bill, member, DisputeStatus.OPEN)),
            stat_collected=Coalesce(
                Subquery(
                    Transaction.objects.filter(
                        bill_id=OuterRef("pk"),
                        status=TransactionStatus.COMPLETED,
                        type__in=[TransactionType.BILL_PAYMENT, TransactionType.REFUND],
                    )
                    .order_by()
                    .values("bill_id")
                    .annotate(net=-Sum("amount"))
                    .values("net"),
                    output_field=MONEY,
                ),
                Value(ZERO),
                output_field=MONEY,
            ),
        ),
        day,
    )


@dataclass(frozen=True)
class BillStats:
    eligible: int
    acknowledged: int
    paid: int
    disputed: int
    waived: int
    overdue: int
    outstanding: int
    collected_amount: Decimal

    @classmethod
    def attach_opening(cls, bill: Bill, *, eligible: int, today: datetime.date | None = None) -> None:
        """Set on a bill just issued the ``stat_*`` attributes :func:`bills_with_stats`
        would read: its audience, and no facts yet (the bill creation's response)."""
        live = bill.cancelled_at is None
        past_due = live and (today or estate_today()) > bill.due_date
        values: dict[str, int | Decimal] = {"eligible": eligible, "acknowledged": 0, "paid": 0, "waived": 0}
        values.update(disputed=0, overdue=eligible if past_due else 0, outstanding=eligible if live else 0)
        values["collected"] = ZERO
        for name, value in values.items():
            setattr(bill, f"stat_{name}", value)

    @classmethod
    def of(cls, bill: Any) -> BillStats:
        """Read the ``stat_*`` annotations of a bill from :func:`bills_with_stats`."""
        return cls(
            eligible=bill.stat_eligible,
            acknowledged=bill.stat_acknowledged,
            paid=bill.stat_paid,
            disputed=bill.stat_disputed,
            waived=bill.stat_waived,
            overdue=bill.stat_overdue,
            outstanding=bill.stat_outstanding,
            collected_amount=bill.stat_collected,
        )


# --- access ---------------------------------------------------------------------------


@functools.cache
def _bill_of_member_sql(vendor: str) -> str:
    cluster, user, created = column(Bill, "cluster"), column(Bill, "user"), column(Bill, "created_at")
    # The rule of ``bills_applying_to``, as one fixed statement (every resident action reads it).
    return (
        f"SELECT {model_columns(Bill, 'b')} FROM {table(Bill)} b "  # noqa: S608 - identifiers from the models
        f"WHERE b.{column(Bill, 'id')} = %(bill)s AND b.{cluster} = %(cluster)s "
        f"AND (b.{user} = %(user)s OR (b.{user} IS NULL AND b.{created} >= %(joined)s))"
    )


def access_bill_as_member(access: EstateAccess, bill_id: object) -> Bill:
    """A bill that applies to the caller; anything else is ``NotFoundError``."""
    membership = access.require_member()
    pk = parse_uuid(bill_id)
    if not (membership.active and membership.is_resident):
        raise NotFoundError()
    row = fetch_one(
        _bill_of_member_sql(connection.vendor),
        {
            "bill": db_value(Bill, "id", pk),
            "cluster": db_value(Bill, "cluster", membership.cluster_id),
            "user": db_value(Bill, "user", membership.user_id),
            "joined": db_value(Bill, "created_at", membership.joined_at),
        },
    )
    if row is None:
        raise NotFoundError()
    bill, _ = model_from_row(Bill, row)
    bill.cluster = access.cluster
    return bill


def access_bill_as_staff(access: EstateAccess, bill_id: object) -> Bill:
    """Any bill of the caller's estate, for a caller who may read its finances."""
    access.require_read_finances()
    bill = Bill.objects.select_related("cluster").filter(cluster_id=access.cluster.pk, pk=parse_uuid(bill_id)).first()
    if bill is None:
        raise NotFoundError()
    return bill


def access_dispute(access: EstateAccess, dispute_id: object) -> BillDispute:
    access.require_read_finances()
    dispute = (
        BillDispute.objects.select_related("bill", "user")
        .filter(cluster_id=access.cluster.pk, pk=parse_uuid(dispute_id))
        .first()
    )
    if dispute is None:
        raise NotFoundError()
    return dispute


# --- rules, as refusals ---------------------------------------------------------------


def bill_acknowledge_refusal(*, bill: Bill, user: User) -> RuleViolation | NotFoundError | None:
    """Why ``user`` may not acknowledge ``bill`` — or ``None`` if they may."""
    if not bill_applies_to(bill=bill, user=user):
        return NotFoundError()
    if bill.cancelled_at is not None:
        return RuleViolation("This bill has been cancelled.", code="bill_cancelled")
    return None


def bill_payment_refusal(
    *, bill: Bill, user: User, today: datetime.date | None = None
) -> RuleViolation | NotFoundError | None:
    """Why ``user`` may not pay ``bill`` now — or ``None`` if they may. The order is
    the order the checks are reported in."""
    read = read_member_facts(bill=bill, user=user)
    if not read["applies"]:
        return NotFoundError()
    facts = MemberBillFacts(
        cancelled=bill.cancelled_at is not None,
        paid=read["paid"],
        waived=read["waived"],
        disputed=read["disputed"],
        past_due=(today or estate_today()) > bill.due_date,
        acknowledged=read["acknowledged"],
    )
    if facts.cancelled:
        return RuleViolation("This bill has been cancelled.", code="bill_cancelled")
    if facts.paid:
        return RuleViolation("You have already paid this bill.", code="bill_already_paid")
    if facts.waived:
        return RuleViolation("This bill was waived for you.", code="bill_waived")
    if facts.disputed:
        return RuleViolation("You have an open dispute on this bill.", code="bill_disputed")
    if not facts.acknowledged:
        return RuleViolation("Acknowledge the bill before paying it.", code="bill_not_acknowledged")
    if facts.past_due and not bill.allow_payment_after_due:
        return RuleViolation(
            "This bill is past its due date and no longer accepts payment.", code="payment_after_due_not_allowed"
        )
    return None


# --- per-member summaries and the dashboard -------------------------------------------------


def _bills_of_outer_member() -> QuerySet[Bill]:
    """Live (not cancelled) bills applying to the membership of the enclosing query."""
    return Bill.objects.filter(cluster_id=OuterRef("cluster_id"), cancelled_at__isnull=True).filter(
        Q(user_id=OuterRef("user_id")) | Q(user__isnull=True, created_at__gte=OuterRef("joined_at"))
    )


def _count_member_bills(condition: Q, *, total: str | None = None) -> Coalesce:
    member = OuterRef(OuterRef("user_id"))
    bill = OuterRef("pk")
    bills = (
        _bills_of_outer_member()
        .annotate(
            f_paid=_paid(bill, member),
            f_waived=_dispute(bill, member, DisputeStatus.UPHELD),
            f_disputed=_dispute(bill, member, DisputeStatus.OPEN),
            f_acknowledged=_acknowledged(bill, member),
        )
        .filter(condition)
        .order_by()
        .values("cluster_id")
    )
    if total:
        return Coalesce(Subquery(bills.annotate(t=Sum(total)).values("t"), output_field=MONEY), Value(ZERO))
    return Coalesce(Subquery(bills.annotate(n=Count("pk")).values("n"), output_field=IntegerField()), 0)


def members_with_bill_summary(
    memberships: QuerySet[Membership], *, today: datetime.date | None = None
) -> QuerySet[Any]:
    """Annotate memberships with the hover-card summary of their live bills:
    ``sum_outstanding_count``, ``sum_outstanding_amount``, ``sum_overdue_count``,
    ``sum_unacknowledged_count`` (owed and not yet acknowledged),
    ``sum_disputed_count`` and ``sum_paid_count``. Members who are not billed (staff,
    deactivated) have zeros.

    One correlated count per figure per member: the obviously-correct form, kept as the
    reference that :func:`attach_member_summaries` (what the member list uses) is tested
    against."""
    day = today or estate_today()
    owing = Q(f_paid=False, f_waived=False)
    billed = Q(active=True, is_resident=True)

    def only_billed(expr: Coalesce, zero: Any) -> Case:
        return Case(When(billed, then=expr), default=Value(zero), output_field=expr.output_field)

    return memberships.annotate(
        sum_outstanding_count=only_billed(_count_member_bills(owing), 0),
        sum_outstanding_amount=only_billed(_count_member_bills(owing, total="amount"), ZERO),
        sum_overdue_count=only_billed(_count_member_bills(owing & Q(f_disputed=False, due_date__lt=day)), 0),
        sum_unacknowledged_count=only_billed(_count_member_bills(owing & Q(f_acknowledged=False)), 0),
        sum_disputed_count=only_billed(_count_member_bills(owing & Q(f_disputed=True)), 0),
        sum_paid_count=only_billed(_count_member_bills(Q(f_paid=True)), 0),
    )


def members_filtered_by_overdue(
    memberships: QuerySet[Membership], *, has_overdue: bool, today: datetime.date | None = None
) -> QuerySet[Membership]:
    """Members with (or without) an overdue bill. Only the overdue count is computed,
    and only for the rows the ordered scan visits until the page is full."""
    day = today or estate_today()
    overdue = _count_member_bills(Q(f_paid=False, f_waived=False, f_disputed=False, due_date__lt=day))
    billed_overdue = Case(
        When(Q(active=True, is_resident=True), then=overdue), default=Value(0), output_field=IntegerField()
    )
    aliased = memberships.alias(overdue_count=billed_overdue)
    return aliased.filter(overdue_count__gt=0) if has_overdue else aliased.filter(overdue_count=0)


MEMBER_SUMMARY_FIELDS = (
    "sum_outstanding_count",
    "sum_outstanding_amount",
    "sum_overdue_count",
    "sum_unacknowledged_count",
    "sum_disputed_count",
    "sum_paid_count",
)


def attach_member_summaries(memberships: Sequence[Membership], *, today: datetime.date | None = None) -> None:
    """Set the ``sum_*`` attributes of :func:`members_with_bill_summary` on each of
    ``memberships`` (a page), with one query: each (member, bill) pair's four facts are
    read once and aggregated, where the annotations would read them once per figure."""
    for membership in memberships:
        for name in MEMBER_SUMMARY_FIELDS:
            setattr(membership, name, ZERO if name == "sum_outstanding_amount" else 0)
    if not memberships:
        return
    day = today or estate_today()
    qn = connection.ops.quote_name
    t = {
        "m": qn(Membership._meta.db_table),
        "b": qn(Bill._meta.db_table),
        "tx": qn(Transaction._meta.db_table),
        "d": qn(BillDispute._meta.db_table),
        "a": qn(BillAcknowledgement._meta.db_table),
    }
    id_field = Membership._meta.pk
    ids = [id_field.get_db_prep_value(m.pk, connection) for m in memberships]
    placeholders = ", ".join(["%s"] * len(ids))
    user_field = Membership._meta.get_field("user").target_field
    users = [user_field.get_db_prep_value(m.user_id, connection) for m in memberships]
    users_in = ", ".join(["%s"] * len(users))
    owing = "f.paid = 0 AND f.waived = 0"
    # Table names come from the models; every value is a parameter.
    # The (member, bill) pairs come from two index-friendly joins (their own bills; the
    # estate-wide ones since they joined) rather than one OR that scans every bill of the
    # estate per member. Their facts are joined from the page's members' own rows (read
    # from the member-first indexes), not probed pair by pair: at L a page has 10,000
    # pairs. MATERIALIZED: the facts are joined once, not once per aggregate.
    statement = f"""
        WITH pairs AS (
            SELECT m.id AS mid, m.user_id AS uid, b.id AS bid, b.amount AS amount, b.due_date AS due_date
            FROM {t["m"]} m
            JOIN {t["b"]} b ON b.cluster_id = m.cluster_id AND b.user_id = m.user_id AND b.cancelled_at IS NULL
            WHERE m.id IN ({placeholders}) AND m.active = %s AND m.is_resident = %s
            UNION ALL
            SELECT m.id, m.user_id, b.id, b.amount, b.due_date
            FROM {t["m"]} m
            JOIN {t["b"]} b ON b.cluster_id = m.cluster_id AND b.user_id IS NULL AND b.created_at >= m.joined_at
                 AND b.cancelled_at IS NULL
            WHERE m.id IN ({placeholders}) AND m.active = %s AND m.is_resident = %s
        ),
        f AS MATERIALIZED (
            SELECT p.mid, p.amount, p.due_date,
                   CASE WHEN pay.bill_id IS NULL THEN 0 ELSE 1 END AS paid,
                   CASE WHEN upheld.bill_id IS NULL THEN 0 ELSE 1 END AS waived,
                   CASE WHEN open.bill_id IS NULL THEN 0 ELSE 1 END AS disputed,
                   CASE WHEN ack.bill_id IS NULL THEN 0 ELSE 1 END AS acknowledged
            FROM pairs p
            LEFT JOIN (SELECT tx.bill_id, tx.payer_id AS uid FROM {t["tx"]} tx
                       WHERE tx.payer_id IN ({users_in}) AND tx.type = %s AND tx.status = %s) pay
                   ON pay.bill_id = p.bid AND pay.uid = p.uid
            LEFT JOIN (SELECT d.bill_id, d.user_id AS uid FROM {t["d"]} d
                       WHERE d.user_id IN ({users_in}) AND d.status = %s) upheld
                   ON upheld.bill_id = p.bid AND upheld.uid = p.uid
            LEFT JOIN (SELECT d.bill_id, d.user_id AS uid FROM {t["d"]} d
                       WHERE d.user_id IN ({users_in}) AND d.status = %s) open
                   ON open.bill_id = p.bid AND open.uid = p.uid
            LEFT JOIN (SELECT a.bill_id, a.user_id AS uid FROM {t["a"]} a WHERE a.user_id IN ({users_in})) ack
                   ON ack.bill_id = p.bid AND ack.uid = p.uid
        )
        SELECT f.mid,
               SUM(CASE WHEN {owing} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {owing} THEN f.amount ELSE 0 END),
               SUM(CASE WHEN {owing} AND f.disputed = 0 AND f.due_date < %s THEN 1 ELSE 0 END),
               SUM(CASE WHEN {owing} AND f.acknowledged = 0 THEN 1 ELSE 0 END),
               SUM(CASE WHEN {owing} AND f.disputed = 1 THEN 1 ELSE 0 END),
               SUM(CASE WHEN f.paid = 1 THEN 1 ELSE 0 END)
        FROM f
        GROUP BY f.mid
    """  # noqa: S608
    params = [
        *ids,
        True,
        True,
        *ids,
        True,
        True,
        *users,
        TransactionType.BILL_PAYMENT.value,
        TransactionStatus.COMPLETED.value,
        *users,
        DisputeStatus.UPHELD.value,
        *users,
        DisputeStatus.OPEN.value,
        *users,
        connection.ops.adapt_datefield_value(day),
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = {id_field.to_python(r[0]): r[1:] for r in cursor.fetchall()}
    for membership in memberships:
        row = rows.get(membership.pk)
        if row is None:
            continue
        outstanding, amount, overdue, unacknowledged, disputed, paid = row
        membership.sum_outstanding_count = int(outstanding)  # type: ignore[attr-defined]
        membership.sum_outstanding_amount = Decimal(str(amount or 0)).quantize(ZERO)  # type: ignore[attr-defined]
        membership.sum_overdue_count = int(overdue)  # type: ignore[attr-defined]
        membership.sum_unacknowledged_count = int(unacknowledged)  # type: ignore[attr-defined]
        membership.sum_disputed_count = int(disputed)  # type: ignore[attr-defined]
        membership.sum_paid_count = int(paid)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Dashboard:
    currency: str
    billed_amount: Decimal
    collected_amount: Decimal
    outstanding_amount: Decimal
    overdue_amount: Decimal
    collection_rate: Decimal
    open_disputes: int
    bills_count: int
    members_count: int
    recent_payments: list[Transaction]
    due_soon: list[Any]


def cluster_dashboard(access: EstateAccess, *, today: datetime.date | None = None, recent: int = 10) -> Dashboard:
    """The admin's at-a-glance numbers for one estate (live bills only)."""
    access.require_read_finances()
    day = today or estate_today()
    cluster = access.cluster
    live = Bill.objects.filter(cluster=cluster, cancelled_at__isnull=True)
    # Sums over the live bills' counter rows: the status counts partition each audience,
    # so the per-row differences add up to the per-bill ones.
    owed = F("counters__eligible") - F("counters__paid") - F("counters__waived")

    def total(amount: Any, condition: Q | None = None) -> Coalesce:
        return Coalesce(Sum(amount, filter=condition, output_field=MONEY), Value(ZERO), output_field=MONEY)

    totals = live.aggregate(
        bills=Count("pk", distinct=True),
        billed=total(F("amount") * F("counters__eligible")),
        outstanding=total(F("amount") * owed),
        overdue=total(F("amount") * (owed - F("counters__disputed")), Q(due_date__lt=day)),
        collected=total(F("counters__collected")),
    )
    billed, collected = totals["billed"], totals["collected"]
    rate = (collected / billed).quantize(Decimal("0.0001")) if billed else Decimal("0")
    due_soon = list(
        bills_with_stats(live.filter(due_date__gte=day), today=day)
        .filter(stat_outstanding__gt=0)
        .order_by("due_date", "reference")
        .values("id", "reference", "title", "amount", "due_date", "stat_outstanding")[:recent]
    )
    return Dashboard(
        currency=cluster.currency,
        billed_amount=billed,
        collected_amount=collected,
        outstanding_amount=totals["outstanding"],
        overdue_amount=totals["overdue"],
        collection_rate=rate,
        # All open disputes (from the index alone), less those on cancelled bills (few):
        # cheaper than joining every open dispute to its bill.
        open_disputes=BillDispute.objects.filter(cluster=cluster, status=DisputeStatus.OPEN).count()
        - BillDispute.objects.filter(
            cluster=cluster, status=DisputeStatus.OPEN, bill__cancelled_at__isnull=False
        ).count(),
        bills_count=totals["bills"],
        members_count=Membership.objects.filter(cluster=cluster, active=True).count(),
        recent_payments=list(
            Transaction.objects.filter(
                cluster=cluster, type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED
            )
            .select_related("bill", "payer")
            .order_by("-created_at", "-id")[:recent]
        ),
        due_soon=due_soon,
    )
