"""Recurring bills: schedules and the issuing of each period's bill.

A schedule's period ``n`` (from 0) falls due ``n`` periods after its first due date
(the same day of the month, or the month's last day when it is shorter) and is issued
``issue_days_before`` days earlier, by :func:`schedules_issue_due` — the Celery beat
task ``levy.billing.tasks.issue_scheduled_bills``.

Each period is issued in its own transaction that holds the schedule's row lock, so
two schedulers running at once take turns and the second finds the period done; the
bill carries its (schedule, period) under a unique constraint, so even code that
skipped the lock could not issue a period twice. A scheduler that was down issues
every period whose issue date has come, oldest first, one bill each (catching up); a
task that crashed and runs again starts from the first period not yet issued.

Pausing stops the issuing; resuming skips the periods whose due date passed while
paused. Ending is final. Neither touches bills already issued.
"""

from __future__ import annotations

import calendar
import datetime
import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from levy.audit.services import audit_record
from levy.billing.issuing import bill_issue, require_billable_member
from levy.billing.models import MONTHS_PER_PERIOD, BillSchedule, ScheduleFrequency
from levy.billing.selectors import estate_today
from levy.billing.validation import MAX_TEXT, BillInput, bill_values, clean_text
from levy.common.errors import RuleViolation, ValidationError
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.permissions import PaymentsPermissions

logger = logging.getLogger("levy.billing")

MAX_ISSUE_DAYS_BEFORE = 366


# --- the calendar ---------------------------------------------------------------------------


def add_months(day: datetime.date, months: int) -> datetime.date:
    """``day`` moved by ``months``, on the same day of the month or the month's last."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def period_due_date(schedule: BillSchedule, period: int) -> datetime.date:
    """Always counted from the first due date, so a 31st stays a 31st where it can."""
    return add_months(schedule.first_due_date, period * MONTHS_PER_PERIOD[ScheduleFrequency(schedule.frequency)])


def period_issue_date(schedule: BillSchedule, period: int) -> datetime.date:
    return period_due_date(schedule, period) - datetime.timedelta(days=schedule.issue_days_before)


def period_label(schedule: BillSchedule, period: int) -> str:
    due = period_due_date(schedule, period)
    if schedule.frequency == ScheduleFrequency.MONTHLY:
        return due.strftime("%B %Y")
    if schedule.frequency == ScheduleFrequency.QUARTERLY:
        return f"Q{(due.month - 1) // 3 + 1} {due.year}"
    return str(due.year)


# --- managing schedules ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleInput:
    title: str
    description: str
    category: str
    amount: Any
    allow_payment_after_due: bool
    frequency: str
    first_due_date: datetime.date
    issue_days_before: int = 14


def schedule_create(
    *, access: EstateAccess, data: ScheduleInput, user_id: Any = None, origin: Origin = Origin()
) -> BillSchedule:
    """A schedule for the whole estate (``user_id`` None) or one resident member."""
    access.require(PaymentsPermissions.ManageBill)
    errors: dict[str, list[str]] = {}
    try:
        # The bill rules: title, category, amount, and a first due date not in the past.
        values = bill_values(
            BillInput(
                title=data.title,
                description=data.description,
                category=data.category,
                amount=data.amount,
                due_date=data.first_due_date,
                allow_payment_after_due=data.allow_payment_after_due,
            ),
            currency=access.cluster.currency,
        )
    except ValidationError as exc:
        errors.update(exc.fields)
        values = {}
    if "due_date" in errors:
        errors["first_due_date"] = errors.pop("due_date")
    if len(values.get("title", "")) > 160:
        errors["title"] = ["Use at most 160 characters (the period is added to each bill's title)."]
    if data.frequency not in ScheduleFrequency.values:
        errors["frequency"] = [f"Choose one of: {', '.join(ScheduleFrequency.values)}."]
    lead = data.issue_days_before
    if not isinstance(lead, int) or isinstance(lead, bool) or not 0 <= lead <= MAX_ISSUE_DAYS_BEFORE:
        errors["issue_days_before"] = [f"Enter a whole number of days from 0 to {MAX_ISSUE_DAYS_BEFORE}."]
    if errors:
        raise ValidationError(fields=errors)
    with transaction.atomic():
        if user_id is not None:
            require_billable_member(access.cluster, user_id)
        schedule = BillSchedule(
            cluster=access.cluster,
            title=values["title"],
            description=values["description"],
            category=values["category"],
            amount=values["amount"],
            allow_payment_after_due=values["allow_payment_after_due"],
            user_id=user_id,
            frequency=data.frequency,
            first_due_date=data.first_due_date,
            issue_days_before=lead,
            created_by=access.user,
        )
        schedule.next_issue_on = period_issue_date(schedule, 0)
        schedule.save(force_insert=True)
        audit_record(
            action="schedule.create",
            target=schedule,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={
                **values,
                "user_id": str(user_id) if user_id else None,
                "frequency": data.frequency,
                "first_due_date": data.first_due_date,
                "issue_days_before": lead,
            },
        )
    return schedule


def _locked(access: EstateAccess, schedule: BillSchedule) -> BillSchedule:
    locked = BillSchedule.objects.select_for_update().get(pk=schedule.pk, cluster_id=access.cluster.pk)
    locked.cluster = access.cluster
    if locked.ended_at is not None:
        raise RuleViolation("This schedule has ended.", code="schedule_ended")
    return locked


def schedule_pause(*, access: EstateAccess, schedule: BillSchedule, origin: Origin = Origin()) -> BillSchedule:
    """Stop issuing bills until resumed. Bills already issued stay as they are. Pausing
    a paused schedule changes nothing."""
    access.require(PaymentsPermissions.ManageBill)
    with transaction.atomic():
        locked = _locked(access, schedule)
        if locked.paused_at is None:
            locked.paused_at = timezone.now()
            locked.save(update_fields=["paused_at"])
            audit_record(
                action="schedule.pause", target=locked, actor=access.user, cluster=access.cluster, origin=origin
            )
    return locked


def schedule_resume(*, access: EstateAccess, schedule: BillSchedule, origin: Origin = Origin()) -> BillSchedule:
    """Issue again, from the first period whose due date has not passed: the periods
    that fell due while paused are skipped, not billed late. Resuming a running
    schedule changes nothing."""
    access.require(PaymentsPermissions.ManageBill)
    with transaction.atomic():
        locked = _locked(access, schedule)
        if locked.paused_at is not None:
            today = estate_today()
            skipped_from = locked.next_period
            while period_due_date(locked, locked.next_period) < today:
                locked.next_period += 1
            locked.next_issue_on = period_issue_date(locked, locked.next_period)
            locked.paused_at = None
            locked.save(update_fields=["paused_at", "next_period", "next_issue_on"])
            audit_record(
                action="schedule.resume",
                target=locked,
                actor=access.user,
                cluster=access.cluster,
                origin=origin,
                data={"skipped_periods": list(range(skipped_from, locked.next_period))},
            )
    return locked


def schedule_end(
    *, access: EstateAccess, schedule: BillSchedule, reason: str = "", origin: Origin = Origin()
) -> BillSchedule:
    """No more bills, for good. Bills already issued stay as they are."""
    access.require(PaymentsPermissions.ManageBill)
    errors: dict[str, list[str]] = {}
    reason = clean_text(reason, "reason", required=False, max_length=MAX_TEXT, errors=errors)
    if errors:
        raise ValidationError(fields=errors)
    with transaction.atomic():
        locked = _locked(access, schedule)
        locked.ended_at = timezone.now()
        locked.end_reason = reason
        locked.save(update_fields=["ended_at", "end_reason"])
        audit_record(
            action="schedule.end",
            target=locked,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"reason": reason},
        )
    return locked


# --- issuing --------------------------------------------------------------------------------


def _issue_next(schedule_id: Any, today: datetime.date) -> bool | None:
    """Issue the schedule's next period if its issue date has come: one transaction,
    under the schedule's row lock. Returns True when it issued the period's bill,
    False when the bill existed already (the schedule moves past it), None when
    nothing is due (or the schedule is paused, ended, or ended now because its member
    left)."""
    with transaction.atomic():
        schedule = (
            BillSchedule.objects.select_for_update(of=("self",))
            .select_related("cluster")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None or schedule.paused_at or schedule.ended_at or schedule.next_issue_on > today:
            return None
        period = schedule.next_period
        values = {
            "title": f"{schedule.title} ({period_label(schedule, period)})",
            "description": schedule.description,
            "category": schedule.category,
            "amount": schedule.amount,
            "due_date": period_due_date(schedule, period),
            "allow_payment_after_due": schedule.allow_payment_after_due,
        }
        created = True
        try:
            with transaction.atomic():
                bill_issue(
                    cluster=schedule.cluster,
                    created_by_id=schedule.created_by_id,
                    actor=None,
                    values=values,
                    user_id=schedule.user_id,
                    extra={"schedule_id": schedule.pk, "schedule_period": period},
                )
        except ValidationError:
            # The schedule's member is no longer an active resident: nobody to bill.
            schedule.ended_at = timezone.now()
            schedule.end_reason = "The member is no longer an active resident of the estate."
            schedule.save(update_fields=["ended_at", "end_reason"])
            audit_record(
                action="schedule.end",
                target=schedule,
                actor=None,
                cluster=schedule.cluster,
                origin=Origin(),
                data={"reason": schedule.end_reason, "period": period},
            )
            return None
        except IntegrityError:
            # The period exists already (the constraint, not the lock, caught it): move on.
            logger.warning("schedule %s period %s was already issued", schedule.pk, period)
            created = False
        schedule.next_period = period + 1
        schedule.next_issue_on = period_issue_date(schedule, period + 1)
        schedule.save(update_fields=["next_period", "next_issue_on"])
    return created


def schedules_issue_due(today: datetime.date | None = None) -> dict[str, Any]:
    """Issue every running schedule's due periods, oldest first (catching up after an
    outage). Safe to run concurrently and repeatedly."""
    day = today or estate_today()
    due = (
        BillSchedule.objects.filter(paused_at__isnull=True, ended_at__isnull=True, next_issue_on__lte=day)
        .order_by("next_issue_on", "id")
        .values_list("pk", flat=True)
    )
    issued = 0
    for schedule_id in list(due):
        while (created := _issue_next(schedule_id, day)) is not None:
            issued += int(created)
    return {"date": day.isoformat(), "bills": issued}
