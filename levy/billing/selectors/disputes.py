"""The estate's disputes, for its managers; a member's own disputes of a bill."""

from __future__ import annotations

from dataclasses import dataclass

from levy.billing.models import Bill, BillDispute
from levy.common.listing import Listing
from levy.estates.access import EstateAccess


@dataclass(frozen=True)
class DisputeFilters:
    status: str | None = None  # a DisputeStatus


def dispute_list(*, access: EstateAccess, filters: DisputeFilters = DisputeFilters()) -> Listing[BillDispute]:
    """The estate's disputes, newest first. Needs a financial permission."""
    access.require_read_finances()
    disputes = BillDispute.objects.filter(cluster=access.cluster)
    if filters.status:
        disputes = disputes.filter(status=filters.status)
    return Listing(disputes)


def member_bill_disputes(*, access: EstateAccess, bill: Bill) -> list[BillDispute]:
    """The caller's own disputes of ``bill`` (from ``member_bill`` or an access helper),
    newest first: the open one, or how each was answered."""
    membership = access.require_member()
    return list(
        BillDispute.objects.filter(cluster_id=access.cluster.pk, bill_id=bill.pk, user_id=membership.user_id).order_by(
            "-created_at", "-id"
        )
    )
