"""Recurring bills: the estate's schedules, for its managers."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from levy.billing.models import Bill, BillSchedule
from levy.common.listing import Listing
from levy.estates.access import EstateAccess

SCHEDULE_STATUSES = ("active", "paused", "ended")


@dataclass(frozen=True)
class ScheduleFilters:
    status: str | None = None  # one of SCHEDULE_STATUSES


def schedules_with_counts(schedules: QuerySet[BillSchedule]) -> QuerySet[BillSchedule]:
    """``bills_issued`` on each schedule: the bills it has issued so far (one per period
    issued; periods skipped while paused are not counted), read in the same statement
    through the (schedule, period) unique index."""
    issued = (
        Bill.objects.filter(schedule_id=OuterRef("pk"))
        .order_by()
        .values("schedule_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return schedules.annotate(bills_issued=Coalesce(Subquery(issued, output_field=IntegerField()), 0))


def schedule_list(*, access: EstateAccess, filters: ScheduleFilters = ScheduleFilters()) -> Listing[BillSchedule]:
    """The estate's schedules, newest first, each with ``bills_issued`` and its resident
    (``user``, for a one-resident schedule). Needs a financial permission."""
    access.require_read_finances()
    schedules = BillSchedule.objects.filter(cluster_id=access.cluster.pk).select_related("cluster", "user")
    if filters.status == "ended":
        schedules = schedules.filter(ended_at__isnull=False)
    elif filters.status == "paused":
        schedules = schedules.filter(ended_at__isnull=True, paused_at__isnull=False)
    elif filters.status == "active":
        schedules = schedules.filter(ended_at__isnull=True, paused_at__isnull=True)
    return Listing(schedules_with_counts(schedules))


def schedule_detail(*, access: EstateAccess, schedule: BillSchedule) -> BillSchedule:
    """``schedule`` (from ``access_schedule``) read afresh with ``bills_issued`` and its
    resident, for its managers."""
    access.require_read_finances()
    found = (
        schedules_with_counts(BillSchedule.objects.filter(pk=schedule.pk, cluster_id=access.cluster.pk))
        .select_related("user")
        .get()
    )
    found.cluster = access.cluster
    return found
