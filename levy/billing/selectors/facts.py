"""One member's facts and status for a bill, and a page of them (a member's bills, or a bill's members)."""

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

from levy.billing.models import Bill, BillAcknowledgement, BillDispute, DisputeStatus
from levy.billing.selectors.audience import bill_audience, bills_applying_to
from levy.billing.selectors.base import estate_today
from levy.billing.status import BillStatus, MemberBillFacts, can_pay, derive_status, status_case
from levy.common.db import column, db_value, fetch_one, table
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionStatus, TransactionType

if TYPE_CHECKING:
    from levy.accounts.models import User


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
