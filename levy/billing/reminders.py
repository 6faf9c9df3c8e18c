"""Payment reminders, before and after the due date.

``LEVY_REMINDER_OFFSETS_DAYS`` lists the steps relative to the due date (e.g. -3, 1,
7). A step whose day has come (within ``LEVY_REMINDER_CATCH_UP_DAYS``, so a missed
daily run catches up) yields one intent per bill and step; its recipients — members
who still owe the bill and have no open dispute on it — are resolved when it is fanned
out, and the intent's key makes each reminder go at most once per member per bill per
step.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from levy.billing.models import Bill
from levy.billing.selectors import estate_today
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify


def reminder_key(bill: Bill, offset: int) -> str:
    return f"PAYMENT_REMINDER:bill:{bill.pk}:step:{offset:+d}"


def reminders_send(today: datetime.date | None = None) -> dict[str, Any]:
    day = today or estate_today()
    catch_up = int(settings.LEVY_REMINDER_CATCH_UP_DAYS)
    created = 0
    for offset in settings.LEVY_REMINDER_OFFSETS_DAYS:
        # The step for a bill falls on due_date + offset; send it on that day or, if
        # that run was missed, within the catch-up window after it.
        latest_due = day - datetime.timedelta(days=offset)
        earliest_due = latest_due - datetime.timedelta(days=catch_up)
        bills = Bill.objects.filter(
            cancelled_at__isnull=True, due_date__gte=earliest_due, due_date__lte=latest_due
        ).select_related("cluster")
        for bill in bills.iterator(chunk_size=500):
            with transaction.atomic():
                _, is_new = notify(
                    event=NotificationEvents.PAYMENT_REMINDER,
                    cluster=bill.cluster,
                    recipients=Recipients.bill_owing_undisputed(bill),
                    context={**bill_context(bill), "step_days": offset},
                    event_key=reminder_key(bill, offset),
                )
            created += int(is_new)
    return {"date": day.isoformat(), "intents": created}
