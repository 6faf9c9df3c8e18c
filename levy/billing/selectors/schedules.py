"""Recurring bills: the estate's schedules, for its managers."""

from __future__ import annotations

from dataclasses import dataclass

from levy.billing.models import BillSchedule
from levy.common.listing import Listing
from levy.estates.access import EstateAccess

SCHEDULE_STATUSES = ("active", "paused", "ended")


@dataclass(frozen=True)
class ScheduleFilters:
    status: str | None = None  # one of SCHEDULE_STATUSES


def schedule_list(*, access: EstateAccess, filters: ScheduleFilters = ScheduleFilters()) -> Listing[BillSchedule]:
    """The estate's schedules, newest first. Needs a financial permission."""
    access.require_read_finances()
    schedules = BillSchedule.objects.filter(cluster_id=access.cluster.pk).select_related("cluster")
    if filters.status == "ended":
        schedules = schedules.filter(ended_at__isnull=False)
    elif filters.status == "paused":
        schedules = schedules.filter(ended_at__isnull=True, paused_at__isnull=False)
    elif filters.status == "active":
        schedules = schedules.filter(ended_at__isnull=True, paused_at__isnull=True)
    return Listing(schedules)
