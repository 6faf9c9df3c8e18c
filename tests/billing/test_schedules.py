"""Recurring bills: the calendar, the services, and issuing each period exactly once
(in-process; tests/billing/test_schedule_worker.py runs them with real Celery)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillSchedule
from levy.billing.schedules import (
    add_months,
    period_due_date,
    schedule_create,
    schedule_end,
    schedule_pause,
    schedule_resume,
    schedules_issue_due,
)
from levy.billing.selectors import estate_today
from levy.common.errors import PermissionDeniedError, RuleViolation, ValidationError
from levy.estates.models import Membership
from levy.notifications.models import NotificationIntent
from tests.conftest import Estate, access, committed, schedule_input

pytestmark = pytest.mark.django_db

D = datetime.date


def backdate(schedule: BillSchedule, first_due_date: datetime.date) -> BillSchedule:
    """As if the schedule had been created long ago (the service refuses a past date)."""
    BillSchedule.objects.filter(pk=schedule.pk).update(
        first_due_date=first_due_date,
        next_issue_on=first_due_date - datetime.timedelta(days=schedule.issue_days_before),
    )
    schedule.refresh_from_db()
    return schedule


def issued(schedule: BillSchedule) -> list[tuple[int | None, datetime.date, str, Decimal]]:
    return list(
        Bill.objects.filter(schedule=schedule)
        .order_by("schedule_period")
        .values_list("schedule_period", "due_date", "title", "amount")
    )


# --- the calendar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2027, 1, 31), 1, D(2027, 2, 28)),
        (D(2028, 1, 31), 1, D(2028, 2, 29)),
        (D(2027, 1, 31), 2, D(2027, 3, 31)),
        (D(2027, 11, 30), 3, D(2028, 2, 29)),
        (D(2027, 12, 15), 1, D(2028, 1, 15)),
        (D(2027, 3, 1), -3, D(2026, 12, 1)),
        (D(2027, 2, 28), 12, D(2028, 2, 28)),
    ],
)
def test_add_months_keeps_the_day_or_takes_the_months_last(
    day: datetime.date, months: int, expected: datetime.date
) -> None:
    assert add_months(day, months) == expected


def test_periods_are_counted_from_the_first_due_date(estate: Estate) -> None:
    schedule = schedule_create(access=access(estate.admin), data=schedule_input())
    backdate(schedule, D(2027, 1, 31))
    assert [period_due_date(schedule, n) for n in range(4)] == [
        D(2027, 1, 31),
        D(2027, 2, 28),
        D(2027, 3, 31),
        D(2027, 4, 30),
    ]
    for frequency, expected in (("quarterly", D(2027, 7, 31)), ("yearly", D(2029, 1, 31))):
        schedule.frequency = frequency
        assert period_due_date(schedule, 2) == expected


# --- creating ----------------------------------------------------------------------------------


def test_create_an_estate_wide_schedule(estate: Estate) -> None:
    first = estate_today() + datetime.timedelta(days=20)
    schedule = schedule_create(access=access(estate.admin), data=schedule_input(first_due_date=first))
    schedule.refresh_from_db()
    assert (schedule.cluster_id, schedule.user_id, schedule.frequency, schedule.amount) == (
        estate.cluster.pk,
        None,
        "monthly",
        Decimal("15000.00"),
    )
    assert (schedule.next_period, schedule.next_issue_on) == (0, first - datetime.timedelta(days=14))
    assert schedule.created_by_id == estate.admin.user_id
    event = AuditEvent.objects.get(action="schedule.create", target_id=str(schedule.pk))
    assert (event.actor_id, event.data["frequency"], event.data["amount"]) == (
        estate.admin.user_id,
        "monthly",
        "15000.00",
    )
    assert not Bill.objects.filter(schedule=schedule).exists()  # nothing is due before its issue date


def test_create_refuses_bad_input_with_each_field_named(estate: Estate) -> None:
    with pytest.raises(ValidationError) as refused:
        schedule_create(
            access=access(estate.admin),
            data=schedule_input(
                title=" ",
                amount="-5",
                frequency="weekly",
                first_due_date=estate_today() - datetime.timedelta(days=1),
                issue_days_before=400,
            ),
        )
    assert set(refused.value.fields) == {"title", "amount", "frequency", "first_due_date", "issue_days_before"}
    with pytest.raises(ValidationError) as refused:
        schedule_create(access=access(estate.admin), data=schedule_input(title="x" * 161))
    assert set(refused.value.fields) == {"title"}
    with pytest.raises(ValidationError) as refused:
        schedule_create(access=access(estate.admin), data=schedule_input(), user_id=estate.auditor.user_id)
    assert set(refused.value.fields) == {"user_id"}  # staff who do not live there are not billed
    assert not BillSchedule.objects.exists()


def test_only_bill_managers_create_schedules(estate: Estate) -> None:
    for member in (estate.auditor, estate.residents[0]):
        with pytest.raises(PermissionDeniedError):
            schedule_create(access=access(member), data=schedule_input())
    assert not BillSchedule.objects.exists()
    assert not AuditEvent.objects.filter(action="schedule.create").exists()


# --- issuing -----------------------------------------------------------------------------------


def test_each_period_is_issued_on_its_issue_date_once(estate: Estate) -> None:
    admin = access(estate.admin)
    schedule = schedule_create(access=admin, data=schedule_input(issue_days_before=10))
    backdate(schedule, D(2027, 1, 31))

    assert schedules_issue_due(D(2027, 1, 20)) == {"date": "2027-01-20", "bills": 0}
    with committed():
        assert schedules_issue_due(D(2027, 1, 21)) == {"date": "2027-01-21", "bills": 1}
    assert schedules_issue_due(D(2027, 1, 21))["bills"] == 0  # a second run: nothing new
    assert schedules_issue_due(D(2027, 2, 17))["bills"] == 0
    assert schedules_issue_due(D(2027, 2, 18))["bills"] == 1

    assert issued(schedule) == [
        (0, D(2027, 1, 31), "Service charge (January 2027)", Decimal("15000.00")),
        (1, D(2027, 2, 28), "Service charge (February 2027)", Decimal("15000.00")),
    ]
    schedule.refresh_from_db()
    assert (schedule.next_period, schedule.next_issue_on) == (2, D(2027, 3, 21))
    bill = Bill.objects.get(schedule=schedule, schedule_period=0)
    assert (bill.user_id, bill.created_by_id, bill.category, bill.reference[:5]) == (
        None,
        estate.admin.user_id,
        "service_charge",
        "BILL-",
    )
    # Notified like any other bill: its PAYMENT_DUE intent, to its audience.
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}")
    assert (intent.recipients["kind"], intent.context["bill_title"], intent.context["due_date"]) == (
        "bill_audience",
        "Service charge (January 2027)",
        "2027-01-31",
    )
    audit = AuditEvent.objects.get(action="bill.create", target_id=str(bill.pk))
    assert (audit.actor_id, audit.data["schedule_id"], audit.data["schedule_period"]) == (
        None,
        str(schedule.pk),
        "0",
    )


def test_a_scheduler_down_for_three_periods_catches_up_one_bill_per_period(estate: Estate) -> None:
    schedule = schedule_create(access=access(estate.admin), data=schedule_input(frequency="quarterly"))
    backdate(schedule, D(2027, 1, 15))
    # Due 15 Jan, 15 Apr, 15 Jul; the fourth (15 Oct) is issued on 1 Oct.
    assert schedules_issue_due(D(2027, 9, 1)) == {"date": "2027-09-01", "bills": 3}
    assert [row[:3] for row in issued(schedule)] == [
        (0, D(2027, 1, 15), "Service charge (Q1 2027)"),
        (1, D(2027, 4, 15), "Service charge (Q2 2027)"),
        (2, D(2027, 7, 15), "Service charge (Q3 2027)"),
    ]
    assert schedules_issue_due(D(2027, 9, 1))["bills"] == 0
    assert NotificationIntent.objects.filter(event="PAYMENT_DUE", cluster=estate.cluster).count() == 3


def test_the_database_refuses_a_second_bill_for_a_period(estate: Estate) -> None:
    schedule = schedule_create(access=access(estate.admin), data=schedule_input())
    backdate(schedule, D(2027, 1, 31))
    schedules_issue_due(D(2027, 1, 31))
    first = Bill.objects.get(schedule=schedule)
    copy = Bill.objects.filter(pk=first.pk).values().get()
    copy.update(id=None, reference="BILL-2027-999999")
    del copy["id"]
    with pytest.raises(IntegrityError), transaction.atomic():
        Bill.objects.create(**copy)
    # And a schedule whose position was lost (reset by hand) does not issue it again.
    BillSchedule.objects.filter(pk=schedule.pk).update(next_period=0, next_issue_on=D(2027, 1, 17))
    assert schedules_issue_due(D(2027, 1, 31))["bills"] == 0
    schedule.refresh_from_db()
    assert (schedule.next_period, Bill.objects.filter(schedule=schedule).count()) == (1, 1)


def test_a_user_schedule_bills_that_resident_and_ends_when_they_leave(estate: Estate) -> None:
    member = estate.residents[1]
    schedule = schedule_create(
        access=access(estate.admin), data=schedule_input(frequency="yearly"), user_id=member.user_id
    )
    backdate(schedule, D(2027, 3, 1))
    schedules_issue_due(D(2027, 3, 1))
    assert list(Bill.objects.filter(schedule=schedule).values_list("user_id", "title")) == [
        (member.user_id, "Service charge (2027)")
    ]
    Membership.objects.filter(pk=member.pk).update(active=False, deactivated_at=timezone.now())
    assert schedules_issue_due(D(2028, 3, 1))["bills"] == 0
    schedule.refresh_from_db()
    assert schedule.ended_at is not None
    assert schedule.end_reason == "The member is no longer an active resident of the estate."
    assert (schedule.next_period, Bill.objects.filter(schedule=schedule).count()) == (1, 1)


# --- pause, resume, end ------------------------------------------------------------------------


def test_pause_stops_issuing_and_resume_skips_the_periods_due_meanwhile(estate: Estate) -> None:
    admin = access(estate.admin)
    today = estate_today()
    schedule = schedule_create(access=admin, data=schedule_input(issue_days_before=0))
    first = add_months(today.replace(day=1), -3)
    backdate(schedule, first)
    schedules_issue_due(first)  # the first period, issued on time
    paused = schedule_pause(access=admin, schedule=schedule)
    assert paused.paused_at is not None
    assert schedule_pause(access=admin, schedule=schedule).paused_at == paused.paused_at  # twice: no change
    assert schedules_issue_due(today)["bills"] == 0

    resumed = schedule_resume(access=admin, schedule=schedule)
    # Periods 1 and 2 fell due while paused and are skipped; period 3 (due on the 1st
    # of this month) is due today or earlier — it is the current period, but its due
    # date has passed too unless today is the 1st.
    expected_next = 3 if today.day == 1 else 4
    assert (resumed.paused_at, resumed.next_period) == (None, expected_next)
    assert AuditEvent.objects.get(action="schedule.resume").data == {"skipped_periods": list(range(1, expected_next))}
    schedules_issue_due(today)
    assert [p for p, *_ in issued(schedule)] == ([0, 3] if today.day == 1 else [0])
    assert Bill.objects.get(schedule=schedule, schedule_period=0).cancelled_at is None  # untouched


def test_end_is_final_and_leaves_issued_bills_alone(estate: Estate) -> None:
    admin = access(estate.admin)
    schedule = schedule_create(access=admin, data=schedule_input())
    backdate(schedule, D(2027, 1, 31))
    schedules_issue_due(D(2027, 1, 31))
    ended = schedule_end(access=admin, schedule=schedule, reason="The estate changed its levy")
    assert (ended.end_reason, ended.ended_at is not None) == ("The estate changed its levy", True)
    for change in (schedule_pause, schedule_resume, schedule_end):
        with pytest.raises(RuleViolation) as refused:
            change(access=admin, schedule=schedule)
        assert refused.value.code == "schedule_ended"
    assert schedules_issue_due(D(2027, 6, 30))["bills"] == 0
    assert [p for p, *_ in issued(schedule)] == [0]
    assert Bill.objects.get(schedule=schedule).cancelled_at is None


def test_only_bill_managers_pause_resume_and_end(estate: Estate) -> None:
    schedule = schedule_create(access=access(estate.admin), data=schedule_input())
    for member in (estate.auditor, estate.residents[0]):
        for change in (schedule_pause, schedule_resume, schedule_end):
            with pytest.raises(PermissionDeniedError):
                change(access=access(member), schedule=schedule)
    schedule.refresh_from_db()
    assert (schedule.paused_at, schedule.ended_at) == (None, None)
