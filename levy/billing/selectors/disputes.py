"""The estate's disputes, for its managers; a member's own disputes of a bill."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from levy.billing.models import Bill, BillDispute
from levy.billing.status import DisputeStatus
from levy.common.listing import NEWEST_FIRST, Listing
from levy.estates.access import EstateAccess

# The queue: the dispute waiting longest comes first.
OLDEST_FIRST = ("created_at", "id")
# Resolved disputes: the latest decision first.
LATEST_RESOLVED_FIRST = ("-resolved_at", "-id")


@dataclass(frozen=True)
class DisputeFilters:
    status: str | None = None  # a DisputeStatus
    user_id: uuid.UUID | None = None  # the member who disputes
    resolved: bool | None = None  # True: upheld or rejected; False: open


def dispute_list(
    *, access: EstateAccess, filters: DisputeFilters = DisputeFilters(), queue: bool = False
) -> Listing[BillDispute]:
    """The estate's disputes, newest first, with their bill and people. Needs a
    financial permission.

    ``queue=True`` orders them as a manager works through them: open disputes oldest
    first, resolved ones by the latest decision first (with ``status`` or ``resolved``
    saying which)."""
    access.require_read_finances()
    disputes = BillDispute.objects.filter(cluster=access.cluster).select_related("bill", "user", "resolved_by")
    if filters.status:
        disputes = disputes.filter(status=filters.status)
    if filters.user_id:
        disputes = disputes.filter(user_id=filters.user_id)
    if filters.resolved is not None:
        disputes = (
            disputes.exclude(status=DisputeStatus.OPEN)
            if filters.resolved
            else disputes.filter(status=DisputeStatus.OPEN)
        )
    ordering = NEWEST_FIRST
    if queue:
        resolved = filters.resolved or filters.status in (DisputeStatus.UPHELD, DisputeStatus.REJECTED)
        ordering = LATEST_RESOLVED_FIRST if resolved else OLDEST_FIRST
    return Listing(disputes, ordering)


def member_bill_disputes(*, access: EstateAccess, bill: Bill) -> list[BillDispute]:
    """The caller's own disputes of ``bill`` (from ``member_bill`` or an access helper),
    newest first: the open one, or how each was answered."""
    membership = access.require_member()
    return list(
        BillDispute.objects.filter(cluster_id=access.cluster.pk, bill_id=bill.pk, user_id=membership.user_id).order_by(
            "-created_at", "-id"
        )
    )
