"""The bill lists and details managers and members see, with their filters."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, Count, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce

from levy.billing.models import Bill
from levy.billing.rules import MemberFacts, read_member_facts
from levy.billing.selectors.audience import bill_audience, bills_applying_to
from levy.billing.selectors.base import estate_today
from levy.billing.selectors.facts import (
    bill_member_statuses,
    decorate_bill_members,
    decorate_member_bills,
    member_bills,
    set_member_state,
)
from levy.billing.selectors.stats import bills_with_stats
from levy.common.errors import NotFoundError
from levy.common.listing import Listing
from levy.estates.access import EstateAccess
from levy.estates.models import Membership

MEMBERS_IN_JOIN_ORDER = ("joined_at", "id")


@dataclass(frozen=True)
class BillFilters:
    """A manager's bill list filters; ``None`` (or empty) leaves a filter out."""

    scope: str | None = None  # "cluster" (estate-wide bills) or "user" (one member's)
    user_id: uuid.UUID | None = None
    category: str | None = None
    due_before: datetime.date | None = None  # inclusive
    due_after: datetime.date | None = None  # inclusive
    cancelled: bool | None = None
    search: str | None = None  # in the title or the reference
    schedule_id: uuid.UUID | None = None  # the bills a recurring schedule issued


def bill_list(*, access: EstateAccess, filters: BillFilters = BillFilters()) -> Listing[Bill]:
    """The estate's bills, each with its counts (``stat_*``, see :func:`bills_with_stats`),
    newest first. Needs a financial permission."""
    access.require_read_finances()
    bills = Bill.objects.filter(cluster=access.cluster).select_related("cluster")
    if filters.scope == "cluster":
        bills = bills.filter(user__isnull=True)
    elif filters.scope == "user":
        bills = bills.filter(user__isnull=False)
    if filters.user_id:
        bills = bills.filter(user_id=filters.user_id)
    if filters.category:
        bills = bills.filter(category=filters.category)
    if filters.due_before:
        bills = bills.filter(due_date__lte=filters.due_before)
    if filters.due_after:
        bills = bills.filter(due_date__gte=filters.due_after)
    if filters.cancelled is not None:
        bills = bills.filter(cancelled_at__isnull=not filters.cancelled)
    if filters.search:
        term = filters.search.strip()
        bills = bills.filter(Q(title__icontains=term) | Q(reference__icontains=term))
    if filters.schedule_id:
        bills = bills.filter(schedule_id=filters.schedule_id)
    return Listing(bills_with_stats(bills))


def bill_detail(*, bill: Bill) -> Any:
    """``bill`` (from ``access_bill_as_staff``) read afresh with its counts, for its
    managers. ``late_fees_charged``: how many members its late-fee rule charged (0
    before the run; counted only after it); on a late fee ``late_fee_of``, the bill it
    is the fee of; on a recurring bill ``schedule`` — all read in the same statement."""
    fees = Bill.objects.filter(late_fee_of_id=OuterRef("pk")).order_by().values("late_fee_of_id")
    charged = fees.annotate(n=Count("*")).values("n")
    bills = Bill.objects.filter(pk=bill.pk).select_related("cluster", "late_fee_of", "schedule")
    return (
        bills_with_stats(bills)
        .annotate(
            late_fees_charged=Case(
                When(late_fees_issued_at__isnull=True, then=Value(0)),
                default=Coalesce(Subquery(charged, output_field=IntegerField()), 0),
                output_field=IntegerField(),
            )
        )
        .get()
    )


@dataclass(frozen=True)
class BillMemberFilters:
    status: str | None = None  # a BillStatus


def bill_member_list(*, bill: Bill, filters: BillMemberFilters = BillMemberFilters()) -> Listing[Membership]:
    """Each member of ``bill``'s audience (from an access helper) with their ``status``,
    ``acknowledged_at``, ``paid_at`` and ``dispute_id``, in the order they joined."""
    if filters.status:
        # The status is derived in SQL to filter on it before paginating.
        rows = bill_member_statuses(bill=bill).filter(status=filters.status)
        return Listing(rows, ordering=MEMBERS_IN_JOIN_ORDER)
    # Page the audience itself, then read the page's facts for this bill.
    audience = bill_audience(bill).select_related("user").order_by(*MEMBERS_IN_JOIN_ORDER)
    return Listing(
        audience,
        ordering=MEMBERS_IN_JOIN_ORDER,
        decorate=lambda page: decorate_bill_members(page, bill=bill),
    )


@dataclass(frozen=True)
class MemberBillFilters:
    status: str | None = None  # a BillStatus
    category: str | None = None
    statuses: tuple[str, ...] | None = None  # any of these BillStatus values (the pages' sections)


def member_bill_list(
    *,
    access: EstateAccess,
    filters: MemberBillFilters = MemberBillFilters(),
    member: Membership | None = None,
) -> Listing[Bill]:
    """The caller's bills (estate-wide ones since they joined, and their own), newest
    first, each with ``status``, ``acknowledged_at``, ``paid_at`` and ``can_pay``.

    With ``member`` (a membership of the caller's estate, from ``access_membership``):
    that member's bills, read by staff who may read the estate's finances."""
    if member is None:
        membership = access.require_member()
    else:
        access.require_read_finances()
        if member.cluster_id != access.cluster.pk:
            raise NotFoundError()
        membership = member
    if filters.status is not None or filters.statuses is not None:
        # The status is derived in SQL to filter on it before paginating.
        bills = member_bills(membership=membership)
        if filters.status is not None:
            bills = bills.filter(status=filters.status)
        if filters.statuses is not None:
            bills = bills.filter(status__in=filters.statuses)
        if filters.category is not None:
            bills = bills.filter(category=filters.category)
        return Listing(bills)
    # Page the bills themselves, then read the member's facts for the page.
    plain = bills_applying_to(membership).order_by("-created_at", "-id")
    if filters.category is not None:
        plain = plain.filter(category=filters.category)

    def decorate(page: Sequence[Bill]) -> None:
        for bill in page:
            bill.cluster = access.cluster
        decorate_member_bills(page, membership=membership)

    return Listing(plain, decorate=decorate)


def member_bill_with_facts(*, access: EstateAccess, bill: Bill) -> tuple[Bill, MemberFacts]:
    """``bill`` (from ``access_bill_as_member``) with what :func:`member_bill` sets on it,
    and the caller's stored facts for the rules (``levy.billing.rules``): both from the
    one statement of ``read_member_facts``, for a page that shows the bill and asks
    what the caller may do with it."""
    membership = access.require_member()
    facts = read_member_facts(bill=bill, user_id=membership.user_id)
    set_member_state(
        bill, facts.acknowledged_at, facts.paid_at, waived=facts.waived, disputed=facts.disputed, day=estate_today()
    )
    return bill, facts


def member_bill(*, access: EstateAccess, bill: Bill) -> Bill:
    """``bill`` (from ``access_bill_as_member``: one that applies to the caller) with
    what :func:`member_bill_list` sets on each."""
    decorate_member_bills([bill], membership=access.require_member())
    return bill
