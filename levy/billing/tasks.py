"""Celery tasks of billing. Each is safe to run twice, and two at once."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from levy.billing.late_fees import late_fees_issue_due
from levy.billing.reminders import reminders_send
from levy.billing.schedules import schedules_issue_due


@shared_task(acks_late=True, reject_on_worker_lost=True)
def issue_scheduled_bills() -> dict[str, Any]:
    """Beat: issue every recurring bill whose period has come (catching up after an
    outage). The schedule's row lock and the (schedule, period) unique key make a
    concurrent or repeated run issue nothing twice."""
    return schedules_issue_due()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def issue_late_fees() -> dict[str, Any]:
    """Beat: issue the late fees of every bill whose grace period has ended (and of those
    a stopped scheduler missed). Each bill's run claims it with a conditional UPDATE,
    and a member's fee is unique in the database: nothing is charged twice."""
    return late_fees_issue_due()


# Reminders are about bills (who still owes one), so they are billing's; the task keeps
# the name it had in levy.notifications.tasks, which the beat schedule and the runbook use.
@shared_task(name="levy.notifications.tasks.send_payment_reminders")
def send_payment_reminders() -> dict[str, Any]:
    """Beat, daily: PAYMENT_REMINDER before and after due dates."""
    return reminders_send()
