"""PAYMENT_REMINDER before and after due dates, with a controlled clock."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.reminders import reminders_send
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute, dispute_resolve
from levy.notifications.models import Notification, NotificationIntent
from tests.conftest import Estate, access, committed, make_estate

pytestmark = pytest.mark.django_db

DUE = estate_today() + datetime.timedelta(days=10)


def reminded(bill: Bill, step: str) -> set:
    return set(
        Notification.objects.filter(event_key=f"PAYMENT_REMINDER:bill:{bill.pk}:step:{step}").values_list(
            "recipient_id", flat=True
        )
    )


def run(day: datetime.date) -> dict:
    with committed():
        return reminders_send(today=day)


def test_reminders_go_before_and_after_the_due_date_once_per_step(settings) -> None:
    settings.LEVY_REMINDER_OFFSETS_DAYS = [-3, 1, 7]
    estate = make_estate(residents=2)
    bill = estate.wide_bill(due_date=DUE)
    everyone = {m.user_id for m in estate.residents}
    assert run(DUE - datetime.timedelta(days=4))["intents"] == 0
    assert run(DUE - datetime.timedelta(days=3))["intents"] == 1
    assert reminded(bill, "-3") == everyone
    # the same day again, and the next day (inside the catch-up window): nothing new
    assert run(DUE - datetime.timedelta(days=3))["intents"] == 0
    assert run(DUE - datetime.timedelta(days=2))["intents"] == 0
    assert run(DUE + datetime.timedelta(days=1))["intents"] == 1
    assert reminded(bill, "+1") == everyone
    assert run(DUE + datetime.timedelta(days=7))["intents"] == 1
    assert reminded(bill, "+7") == everyone
    assert Notification.objects.filter(event="PAYMENT_REMINDER").count() == 6
    reminder = Notification.objects.filter(event="PAYMENT_REMINDER").first()
    assert reminder.context["due_date"] == DUE.isoformat()
    assert reminder.title == "Reminder: Service charge November"


def test_a_missed_run_catches_up_within_the_window(settings) -> None:
    settings.LEVY_REMINDER_OFFSETS_DAYS = [1]
    settings.LEVY_REMINDER_CATCH_UP_DAYS = 2
    estate = make_estate(residents=1)
    bill = estate.wide_bill(due_date=DUE)
    assert run(DUE + datetime.timedelta(days=3))["intents"] == 1  # two days late: still sent
    assert reminded(bill, "+1") == {estate.residents[0].user_id}
    other = estate.wide_bill(due_date=DUE)
    assert run(DUE + datetime.timedelta(days=4))["intents"] == 0  # three days late: too late
    assert reminded(other, "+1") == set()


def test_no_reminder_to_members_who_paid_were_waived_or_dispute_nor_for_cancelled_bills(settings) -> None:
    settings.LEVY_REMINDER_OFFSETS_DAYS = [-3]
    estate: Estate = make_estate(residents=5)
    payer, waived, disputing, rejected, owing = estate.residents
    bill = estate.wide_bill(due_date=DUE)
    cancelled = estate.wide_bill(due_date=DUE)
    estate.fund(payer, "15000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key="pay")
    upheld = bill_dispute(access=access(waived), bill=bill, reason="not mine")
    dispute_resolve(access=access(estate.admin), dispute=upheld, resolution="upheld", note="agreed")
    bill_dispute(access=access(disputing), bill=bill, reason="too high")
    refused = bill_dispute(access=access(rejected), bill=bill, reason="too high")
    dispute_resolve(access=access(estate.admin), dispute=refused, resolution="rejected", note="budget approved")
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="duplicate")
    assert run(DUE - datetime.timedelta(days=3))["intents"] == 1
    assert reminded(bill, "-3") == {rejected.user_id, owing.user_id}
    assert reminded(cancelled, "-3") == set()
    assert not NotificationIntent.objects.filter(event_key__startswith=f"PAYMENT_REMINDER:bill:{cancelled.pk}").exists()


def test_members_who_pay_after_the_reminder_is_recorded_are_not_reminded(settings) -> None:
    """Recipients are resolved when the reminder is fanned out, not when it is recorded."""
    settings.LEVY_REMINDER_OFFSETS_DAYS = [-3]
    estate = make_estate(residents=2)
    quick, slow = estate.residents
    bill = estate.wide_bill(due_date=DUE)
    reminders_send(today=DUE - datetime.timedelta(days=3))  # recorded; its commit hook not yet run
    estate.fund(quick, "15000.00")
    bill_acknowledge(access=access(quick), bill=bill)
    bill_pay(access=access(quick), bill=bill, idempotency_key="pay")
    from levy.notifications.fanout import intent_deliver

    intent = NotificationIntent.objects.get(event="PAYMENT_REMINDER")
    intent_deliver(intent.pk)
    assert reminded(bill, "-3") == {slow.user_id}
    assert intent.created_at <= timezone.now()
