"""The estate's disputes, for its managers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from levy.billing.models import BillDispute
from levy.common.listing import Listing
from levy.estates.access import EstateAccess


@dataclass(frozen=True)
class DisputeFilters:
    status: str | None = None  # a DisputeStatus
    user_id: uuid.UUID | None = None  # the member who disputes


def dispute_list(*, access: EstateAccess, filters: DisputeFilters = DisputeFilters()) -> Listing[BillDispute]:
    """The estate's disputes, newest first. Needs a financial permission."""
    access.require_read_finances()
    disputes = BillDispute.objects.filter(cluster=access.cluster)
    if filters.status:
        disputes = disputes.filter(status=filters.status)
    if filters.user_id:
        disputes = disputes.filter(user_id=filters.user_id)
    return Listing(disputes)
