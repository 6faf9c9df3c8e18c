"""Notifications, the outbox: record the intent with the change, hand it to a worker
after commit, and sweep up what an outage left.

``notify`` is what the domain services call. It writes a ``NotificationIntent`` (the
outbox) inside the caller's transaction — so the intent exists if and only if the
change committed — and asks for delivery once the transaction commits. Delivery is
the fan-out's (``levy.notifications.fanout``: an intent becomes every recipient's
inbox row) and then the channels' (``levy.notifications.deliveries``: the emails). If
the broker is down at commit, or a worker dies halfway, ``intents_sweep`` re-dispatches
what was not delivered; the unique keys (recipient, event_key) and (notification) make
every re-run deliver nothing twice.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from levy.common.db import insert_unless_exists, update_row
from levy.notifications.events import EVENT_SPECS, Priority
from levy.notifications.models import Delivery, DeliveryStatus, NotificationIntent
from levy.notifications.recipients import Recipients

if TYPE_CHECKING:
    from levy.billing.models import Bill
    from levy.estates.models import Cluster

logger = logging.getLogger("levy.notifications")

HIGH_QUEUE = "notifications_high"
NORMAL_QUEUE = "notifications"


def bill_context(bill: Bill) -> dict[str, Any]:
    """What a person needs to act on a bill: title, amount, currency, due date, ids."""
    return {
        "cluster_id": str(bill.cluster_id),
        "bill_id": str(bill.pk),
        "bill_reference": bill.reference,
        "bill_title": bill.title,
        "amount": f"{bill.amount:.2f}",
        "currency": bill.cluster.currency,
        "due_date": bill.due_date.isoformat(),
        "is_cluster_wide": bill.user_id is None,
    }


def _json_ready(context: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{value:.2f}"
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat()
        return value

    return {key: convert(value) for key, value in context.items()}


def queue_for(priority: str) -> str:
    return HIGH_QUEUE if priority == Priority.HIGH else NORMAL_QUEUE


# --- recording -----------------------------------------------------------------------------


def notify(
    *,
    event: str,
    cluster: Cluster,
    recipients: Recipients,
    context: dict[str, Any],
    event_key: str,
) -> tuple[NotificationIntent, bool]:
    """Record ``event`` for delivery to ``recipients``; idempotent per ``event_key``.
    Returns (intent, created).

    Call it inside the transaction that makes the change. Nothing is delivered unless
    that transaction commits; the request never waits for the fan-out."""
    spec = EVENT_SPECS[event]
    batched = bool(settings.LEVY_NOTIFY_BATCH) and recipients.is_few()
    intent = NotificationIntent(
        batched=batched,
        cluster=cluster,
        event=event,
        event_key=event_key,
        priority=spec.priority.value,
        recipients=recipients.to_json(),
        context=_json_ready(context),
        # Marked as handed to the broker now, with the intent: the commit hands it over,
        # and only a refusal costs a second statement (it clears the mark). A process
        # that dies between its commit and the broker leaves the mark set; the sweep
        # re-dispatches the intent after LEVY_SWEEP_REDISPATCH_SECONDS.
        dispatched_at=timezone.now(),
    )
    created = insert_unless_exists(intent, "event_key")
    if not created:
        intent = NotificationIntent.objects.get(event_key=event_key)
    elif batched and not _tasks_in_process():
        transaction.on_commit(partial(intent_wake, intent.pk, intent.priority), robust=True)
    else:
        transaction.on_commit(partial(intent_dispatch, intent.pk, intent.priority, marked=True), robust=True)
    return intent, created


def _tasks_in_process() -> bool:
    """Tasks run in the caller's process (the demo, the unit tests): no broker round
    trip to save, and no worker to wake; the intent is delivered on its own at once."""
    from levy.notifications.tasks import deliver_pending

    return bool(deliver_pending.app.conf.task_always_eager)


def wake_key(priority: str) -> str:
    """The cache key whose presence means a ``deliver_pending`` task for ``priority``
    is on its way and has not started collecting yet."""
    return f"levy:notifications:wake:{priority}"


def intent_wake(intent_id: Any, priority: str) -> None:
    """After the commit of an intent with few recipients: make sure a ``deliver_pending``
    task will collect it. A refusal clears the intent's dispatch mark, so that the
    sweep delivers it after the short grace, as for ``intent_dispatch``."""
    if not batch_wake(priority):
        update_row(NotificationIntent, intent_id, dispatched_at=None)


def batch_wake(priority: str, *, wait: bool = True) -> bool:
    """Send one ``deliver_pending`` task unless the flag says one is already coming.

    The flag is set with ``cache.add`` (SET NX, expiring after
    LEVY_NOTIFY_WAKE_TTL_SECONDS), so of many commits in a row only the first sends a
    message; the task clears the flag before it collects, so a commit after that sends
    the next one. Returns False if the broker refused the message."""
    from levy.notifications.tasks import deliver_pending

    key = wake_key(priority)
    try:
        fresh = cache.add(key, 1, timeout=settings.LEVY_NOTIFY_WAKE_TTL_SECONDS)
    except Exception:
        logger.warning("cache unavailable: waking the batch delivery without its flag", exc_info=True)
        fresh = True
    if not fresh:
        return True
    try:
        deliver_pending.apply_async(kwargs={"priority": priority, "wait": wait}, queue=queue_for(priority), retry=False)
    except Exception:
        logger.warning("broker unavailable: %s notifications left for the sweep", priority, exc_info=True)
        with contextlib.suppress(Exception):
            cache.delete(key)
        return False
    return True


def intent_dispatch(intent_id: Any, priority: str, *, marked: bool = False) -> bool:
    """Hand an intent to the broker and record when (``marked``: already recorded
    with the intent). A failure is logged, not raised, and leaves ``dispatched_at``
    empty: the sweep will dispatch it later. Returns whether the broker took it."""
    from levy.notifications.tasks import deliver_intent

    try:
        deliver_intent.apply_async(args=[str(intent_id)], queue=queue_for(priority), retry=False)
    except Exception:
        logger.warning("broker unavailable: intent %s left for the sweep", intent_id, exc_info=True)
        if marked:
            update_row(NotificationIntent, intent_id, dispatched_at=None)
        return False
    if not marked:
        update_row(NotificationIntent, intent_id, dispatched_at=timezone.now())
    return True


# --- the sweep -----------------------------------------------------------------------------


def intents_sweep(*, older_than_seconds: int | None = None) -> dict[str, int]:
    """Re-dispatch what was not delivered: intents never handed to the broker (it was
    down at commit) or handed over long ago and still not delivered (a worker died);
    deliveries stuck in ``sending`` after a crash go back to the retry queue."""
    now = timezone.now()
    grace = datetime.timedelta(
        seconds=settings.LEVY_SWEEP_GRACE_SECONDS if older_than_seconds is None else older_than_seconds
    )
    stale = datetime.timedelta(seconds=settings.LEVY_SWEEP_REDISPATCH_SECONDS)
    pending = NotificationIntent.objects.filter(
        delivered_at__isnull=True,
        created_at__lte=now - grace,
        attempts__lt=settings.LEVY_INTENT_MAX_ATTEMPTS,
    ).filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=now - stale))
    dispatched = 0
    for intent_id, priority in pending.order_by("created_at").values_list("pk", "priority")[:1000]:
        if not intent_dispatch(intent_id, priority):
            break  # the broker is down: the next sweep tries again
        dispatched += 1
    reset = Delivery.objects.filter(
        status=DeliveryStatus.SENDING,
        updated_at__lte=now - datetime.timedelta(seconds=settings.LEVY_DELIVERY_STUCK_SECONDS),
    ).update(status=DeliveryStatus.FAILED, last_error="interrupted while sending", next_attempt_at=now, updated_at=now)
    due = Delivery.objects.filter(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED],
        next_attempt_at__lte=now,
        attempts__lt=settings.LEVY_DELIVERY_MAX_ATTEMPTS,
    ).exists()
    if due:
        from levy.notifications.tasks import send_deliveries

        try:
            send_deliveries.apply_async(queue=NORMAL_QUEUE, retry=False)
        except Exception:
            logger.warning("broker unavailable: delivery retries wait for the next sweep", exc_info=True)
    return {"dispatched": dispatched, "deliveries_reset": reset, "deliveries_due": int(due)}
