"""One member's facts and status for a bill, and a page of them (a member's bills, or
a bill's members). The facts as ORM expressions (``paid_fact``, ``dispute_fact``,
``acknowledged_fact``) live here; the one-member fixed statement and the record it
returns live in ``levy.billing.rules``."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from levy.billing.models import Bill, BillAcknowledgement, BillDispute
from levy.billing.rules import (
    COMPLETED_PAYMENT,
    LIVE_PAYMENT_PARAMS,
    REOPENING_REFUND,
    MemberFacts,
    live_payment_sql,
    read_member_facts,
)
from levy.billing.selectors.audience import bill_audience, bills_applying_to
from levy.billing.selectors.base import estate_today
from levy.billing.status import BillStatus, DisputeStatus, MemberBillFacts, can_pay, derive_status, status_case
from levy.common.db import column, table
from levy.estates.models import Membership
from levy.wallets.models import Transaction

if TYPE_CHECKING:
    from levy.accounts.models import User


def live_payment(bill_ref: Any, user_ref: Any) -> QuerySet[Transaction]:
    """The member's live payment of the bill (the "paid" fact; at most one): completed,
    and not reversed by a refund that reopened the bill (``levy.billing.rules``)."""
    reopened = Exists(Transaction.objects.filter(reverses=OuterRef("pk"), **REOPENING_REFUND))
    return Transaction.objects.filter(bill_id=bill_ref, payer_id=user_ref, **COMPLETED_PAYMENT).filter(~reopened)


def paid_fact(bill_ref: Any, user_ref: Any) -> Exists:
    return Exists(live_payment(bill_ref, user_ref))


def last_reopening_refund(*, bill_id: Any, user_id: Any) -> Transaction | None:
    """The latest refund that made the bill unpaid again for the member (their payment
    refunded while the bill was live), if any: what a resident owing it again is shown."""
    refunds = Transaction.objects.filter(bill_id=bill_id, payer_id=user_id, **REOPENING_REFUND)
    return refunds.order_by("-created_at", "-id").first()


def dispute_fact(bill_ref: Any, user_ref: Any, status: str) -> Exists:
    """The member has a dispute of the bill in ``status`` (upheld: waived; open: disputed)."""
    return Exists(BillDispute.objects.filter(bill_id=bill_ref, user_id=user_ref, status=status))


def acknowledged_fact(bill_ref: Any, user_ref: Any) -> Exists:
    return Exists(BillAcknowledgement.objects.filter(bill_id=bill_ref, user_id=user_ref))


def member_bill_facts(*, bill: Bill, user: User, today: datetime.date | None = None) -> MemberBillFacts:
    """The stored facts for one bill and one member (one query)."""
    return read_member_facts(bill=bill, user=user).on(bill, today)


def bill_status_for(*, bill: Bill, user: User, today: datetime.date | None = None) -> BillStatus:
    return read_member_facts(bill=bill, user=user).status(bill, today)


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
            f_paid=paid_fact(bill, user_id),
            f_waived=dispute_fact(bill, user_id, DisputeStatus.UPHELD),
            f_disputed=dispute_fact(bill, user_id, DisputeStatus.OPEN),
            f_acknowledged=acknowledged_fact(bill, user_id),
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
            paid_at=Subquery(live_payment(bill, user_id).values("created_at")[:1]),
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
        # At most one live payment per bill and member.
        f"LEFT JOIN {table(t)} paid ON paid.{column(t, 'bill')} = {bill} AND paid.{column(t, 'payer')} = {user} "
        f"AND {live_payment_sql('paid')}"
    )


@dataclass(frozen=True)
class _PageFacts:
    acknowledged_at: datetime.datetime | None
    paid_at: datetime.datetime | None
    waived: bool
    disputed: bool
    dispute_id: Any

    def stored(self) -> MemberFacts:
        return MemberFacts(
            applies=True,
            paid=self.paid_at is not None,
            waived=self.waived,
            disputed=self.disputed,
            acknowledged=self.acknowledged_at is not None,
        )

    def facts(self, bill: Bill, day: datetime.date) -> MemberBillFacts:
        return self.stored().on(bill, day)


def _read_page_facts(vary: str, page: list[Any], fixed: Any) -> dict[Any, _PageFacts]:
    params: dict[str, Any] = {
        "page": page,
        "fixed": fixed,
        "upheld": DisputeStatus.UPHELD.value,
        "open": DisputeStatus.OPEN.value,
        **LIVE_PAYMENT_PARAMS,
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
        set_member_state(bill, row.acknowledged_at, row.paid_at, waived=row.waived, disputed=row.disputed, day=day)
    return bills


def set_member_state(
    bill: Bill,
    acknowledged_at: datetime.datetime | None,
    paid_at: datetime.datetime | None,
    *,
    waived: bool,
    disputed: bool,
    day: datetime.date,
) -> Bill:
    """Set on ``bill`` what ``member_bills`` annotates (``status``, ``acknowledged_at``,
    ``paid_at``, ``can_pay``), derived from one member's stored facts as a fixed
    statement read them."""
    facts = _PageFacts(acknowledged_at, paid_at, waived, disputed, None).facts(bill, day)
    return MemberBillState(
        pk=bill.pk,
        created_at=bill.created_at,
        due_date=bill.due_date,
        status=derive_status(facts),
        acknowledged_at=acknowledged_at,
        paid_at=paid_at,
        can_pay=can_pay(facts, allow_payment_after_due=bill.allow_payment_after_due),
    ).set_on(bill)


@dataclass(frozen=True)
class MemberBillState:
    """One bill that applies to a member, with what ``member_bills`` annotates on it
    but none of the bill's other columns: enough to sort and split a member's bills by
    status before reading whole rows for the few a page draws."""

    pk: Any
    created_at: datetime.datetime
    due_date: datetime.date
    status: str  # a BillStatus value
    acknowledged_at: datetime.datetime | None
    paid_at: datetime.datetime | None
    can_pay: bool

    def set_on(self, bill: Bill) -> Bill:
        """Set the names ``member_bills`` annotates on ``bill`` (this state's bill)."""
        setattr(bill, "status", self.status)  # noqa: B010
        setattr(bill, "acknowledged_at", self.acknowledged_at)  # noqa: B010
        setattr(bill, "paid_at", self.paid_at)  # noqa: B010
        setattr(bill, "can_pay", self.can_pay)  # noqa: B010
        return bill


def member_bill_states(*, membership: Membership, today: datetime.date | None = None) -> list[MemberBillState]:
    """Every bill that applies to ``membership``, newest first (``member_bills``'
    order), with its status: on PostgreSQL the bills' few columns, then the member's
    facts for all of them in the fixed statement of ``decorate_member_bills`` — two
    short queries whatever the number of bills, and no compiling of the annotated
    queryset; elsewhere read through ``member_bills``."""
    day = today or estate_today()
    if connection.vendor != "postgresql":
        fields = ("pk", "created_at", "due_date", "status", "acknowledged_at", "paid_at", "can_pay")
        return [MemberBillState(*row) for row in member_bills(membership=membership, today=day).values_list(*fields)]
    bills = list(
        bills_applying_to(membership)
        .order_by("-created_at", "-id")
        .values_list("pk", "created_at", "due_date", "cancelled_at", "allow_payment_after_due")
    )
    if not bills:
        return []
    rows = _read_page_facts("bill", [pk for pk, *_ in bills], membership.user_id)
    states = []
    for pk, created_at, due_date, cancelled_at, after_due in bills:
        row = rows[pk]
        facts = row.stored().on_terms(cancelled=cancelled_at is not None, due_date=due_date, today=day)
        states.append(
            MemberBillState(
                pk=pk,
                created_at=created_at,
                due_date=due_date,
                status=derive_status(facts),
                acknowledged_at=row.acknowledged_at,
                paid_at=row.paid_at,
                can_pay=can_pay(facts, allow_payment_after_due=after_due),
            )
        )
    return states


def bill_member_statuses(*, bill: Bill, today: datetime.date | None = None) -> QuerySet[Any]:
    """One bill's audience, one row per member, annotated with ``status``,
    ``acknowledged_at``, ``paid_at`` and ``dispute_id``."""
    day = today or estate_today()
    member = OuterRef("user_id")
    return (
        bill_audience(bill)
        .select_related("user")
        .annotate(
            f_paid=paid_fact(bill.pk, member),
            f_waived=dispute_fact(bill.pk, member, DisputeStatus.UPHELD),
            f_disputed=dispute_fact(bill.pk, member, DisputeStatus.OPEN),
            f_acknowledged=acknowledged_fact(bill.pk, member),
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
            paid_at=Subquery(live_payment(bill.pk, member).values("created_at")[:1]),
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
