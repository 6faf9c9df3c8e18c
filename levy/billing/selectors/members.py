"""Per-member summaries of their live bills (the member list's hover card) and the member list."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from levy.billing.models import Bill, BillAcknowledgement, BillDispute, DisputeStatus
from levy.billing.rules import PAID_ENTRY
from levy.billing.selectors.base import MONEY, ZERO, estate_today
from levy.billing.selectors.facts import acknowledged_fact, dispute_fact, paid_fact
from levy.common.db import column, db_value, table
from levy.common.listing import Listing
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.wallets.models import Transaction


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
            f_paid=paid_fact(bill, member),
            f_waived=dispute_fact(bill, member, DisputeStatus.UPHELD),
            f_disputed=dispute_fact(bill, member, DisputeStatus.OPEN),
            f_acknowledged=acknowledged_fact(bill, member),
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


def _filter_by_member_count(
    memberships: QuerySet[Membership], condition: Q, *, has: bool, name: str
) -> QuerySet[Membership]:
    """Members with (or without) a live bill matching ``condition`` (facts as in
    :func:`members_with_bill_summary`). Only that one count is computed, and only for the
    rows the ordered scan visits until the page is full."""
    count = _count_member_bills(condition)
    billed_count = Case(
        When(Q(active=True, is_resident=True), then=count), default=Value(0), output_field=IntegerField()
    )
    aliased = memberships.alias(**{name: billed_count})
    return aliased.filter(**{f"{name}__gt": 0} if has else {name: 0})


def members_filtered_by_overdue(
    memberships: QuerySet[Membership], *, has_overdue: bool, today: datetime.date | None = None
) -> QuerySet[Membership]:
    """Members with (or without) an overdue bill (``sum_overdue_count`` above zero)."""
    day = today or estate_today()
    overdue = Q(f_paid=False, f_waived=False, f_disputed=False, due_date__lt=day)
    return _filter_by_member_count(memberships, overdue, has=has_overdue, name="overdue_count")


def members_filtered_by_disputed(memberships: QuerySet[Membership], *, has_disputed: bool) -> QuerySet[Membership]:
    """Members with (or without) a bill they dispute (``sum_disputed_count`` above zero)."""
    disputed = Q(f_paid=False, f_waived=False, f_disputed=True)
    return _filter_by_member_count(memberships, disputed, has=has_disputed, name="disputed_count")


MEMBER_SUMMARY_FIELDS = (
    "sum_outstanding_count",
    "sum_outstanding_amount",
    "sum_overdue_count",
    "sum_unacknowledged_count",
    "sum_disputed_count",
    "sum_paid_count",
)


@functools.lru_cache(maxsize=64)
def _member_summaries_sql(vendor: str, count: int) -> str:
    """:func:`attach_member_summaries`' statement for a page of ``count`` members; its
    reference is :func:`members_with_bill_summary` (``tests/billing/test_status.py``
    compares the two).

    The (member, bill) pairs come from two index-friendly joins (their own bills; the
    estate-wide ones since they joined) rather than one OR that scans every bill of the
    estate per member. Their facts are joined from the page's members' own rows (read
    from the member-first indexes), not probed pair by pair: at L a page has 10,000
    pairs. MATERIALIZED: the facts are joined once, not once per aggregate."""
    m, b, tx, d, a = Membership, Bill, Transaction, BillDispute, BillAcknowledgement

    def c(model: Any, name: str) -> str:
        return column(model, name)

    members_in = ", ".join(["%s"] * count)
    users_in = members_in
    owing = "f.paid = 0 AND f.waived = 0"

    def fact(alias: str, model: Any, user: str, condition: str) -> str:
        return (
            f"(SELECT {alias}.{c(model, 'bill')}, {alias}.{c(model, user)} AS uid FROM {table(model)} {alias} "  # noqa: S608
            f"WHERE {alias}.{c(model, user)} IN ({users_in}){condition})"
        )

    live = f"b.{c(b, 'cancelled_at')} IS NULL"
    page = f"m.{c(m, 'id')} IN ({members_in}) AND m.{c(m, 'active')} = %s AND m.{c(m, 'is_resident')} = %s"
    pairs = (
        f"SELECT m.{c(m, 'id')} AS mid, m.{c(m, 'user')} AS uid, b.{c(b, 'id')} AS bid, "  # noqa: S608 - identifiers from the models
        f"b.{c(b, 'amount')} AS amount, b.{c(b, 'due_date')} AS due_date "
        f"FROM {table(m)} m JOIN {table(b)} b ON b.{c(b, 'cluster')} = m.{c(m, 'cluster')}"
    )
    return f"""
        WITH pairs AS (
            {pairs} AND b.{c(b, "user")} = m.{c(m, "user")} AND {live}
            WHERE {page}
            UNION ALL
            {pairs} AND b.{c(b, "user")} IS NULL AND b.{c(b, "created_at")} >= m.{c(m, "joined_at")} AND {live}
            WHERE {page}
        ),
        f AS MATERIALIZED (
            SELECT p.mid, p.amount, p.due_date,
                   CASE WHEN pay.{c(tx, "bill")} IS NULL THEN 0 ELSE 1 END AS paid,
                   CASE WHEN upheld.{c(d, "bill")} IS NULL THEN 0 ELSE 1 END AS waived,
                   CASE WHEN open.{c(d, "bill")} IS NULL THEN 0 ELSE 1 END AS disputed,
                   CASE WHEN ack.{c(a, "bill")} IS NULL THEN 0 ELSE 1 END AS acknowledged
            FROM pairs p
            LEFT JOIN {fact("tx", tx, "payer", f" AND tx.{c(tx, 'type')} = %s AND tx.{c(tx, 'status')} = %s")} pay
                   ON pay.{c(tx, "bill")} = p.bid AND pay.uid = p.uid
            LEFT JOIN {fact("d", d, "user", f" AND d.{c(d, 'status')} = %s")} upheld
                   ON upheld.{c(d, "bill")} = p.bid AND upheld.uid = p.uid
            LEFT JOIN {fact("d", d, "user", f" AND d.{c(d, 'status')} = %s")} open
                   ON open.{c(d, "bill")} = p.bid AND open.uid = p.uid
            LEFT JOIN {fact("a", a, "user", "")} ack
                   ON ack.{c(a, "bill")} = p.bid AND ack.uid = p.uid
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
    """  # noqa: S608 - identifiers from the models; every value is a parameter


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
    id_field = Membership._meta.pk
    ids = [id_field.get_db_prep_value(m.pk, connection) for m in memberships]
    users = [db_value(Membership, "user", m.user_id) for m in memberships]
    params = [
        *ids,
        True,
        True,
        *ids,
        True,
        True,
        *users,
        PAID_ENTRY["type"],
        PAID_ENTRY["status"],
        *users,
        DisputeStatus.UPHELD.value,
        *users,
        DisputeStatus.OPEN.value,
        *users,
        connection.ops.adapt_datefield_value(day),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_member_summaries_sql(connection.vendor, len(memberships)), params)
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
class MemberFilters:
    """A manager's member list filters; ``None`` (or empty) leaves a filter out."""

    role: str | None = None
    active: bool | None = None
    search: str | None = None  # in the email or the name
    has_overdue: bool | None = None
    has_disputed: bool | None = None


def member_list(*, access: EstateAccess, filters: MemberFilters = MemberFilters()) -> Listing[Membership]:
    """The estate's memberships (their users loaded), newest first; the chosen page gets
    each member's bill summary (the ``sum_*`` of :func:`attach_member_summaries`) in one
    query. Needs a financial permission."""
    access.require_read_finances()
    members = Membership.objects.filter(cluster=access.cluster).select_related("user")
    if filters.role:
        members = members.filter(role=filters.role)
    if filters.active is not None:
        members = members.filter(active=filters.active)
    if filters.search:
        term = filters.search.strip()
        members = members.filter(Q(user__email__icontains=term) | Q(user__name__icontains=term))
    if filters.has_overdue is not None:
        members = members_filtered_by_overdue(members, has_overdue=filters.has_overdue)
    if filters.has_disputed is not None:
        members = members_filtered_by_disputed(members, has_disputed=filters.has_disputed)
    return Listing(members, ordering=("-joined_at", "-id"), decorate=attach_member_summaries)
