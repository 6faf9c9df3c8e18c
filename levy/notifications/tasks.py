"""Celery tasks. Each is safe to run twice: the work is idempotent by key."""

from __future__ import annotations

from celery import shared_task

from levy.notifications import deliveries, fanout, services


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def deliver_intent(intent_id: str) -> int:
    """Fan one event out to every recipient's inbox, then send its emails (a few) or
    queue the task that sends them (many: ``LEVY_DELIVERY_INLINE_MAX``)."""
    try:
        return fanout.intent_deliver(intent_id)
    except Exception as exc:
        fanout.intent_failed(intent_id, exc)
        raise


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def deliver_pending(priority: str = "normal", wait: bool = True) -> int:
    """Deliver the waiting intents with few recipients (a receipt, the managers told of
    an acknowledgement), many per task; sent by ``batch_wake`` when a commit finds no
    task on its way. Safe to run any number of times: each intent is claimed under a
    row lock, and an intent already delivered is not claimed."""
    return fanout.intents_deliver_pending(priority=priority, wait=wait)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_deliveries(intent_id: str | None = None) -> dict[str, int]:
    """Send due emails (of one intent, or all that are due)."""
    return deliveries.deliveries_send_due(intent_id=intent_id)


@shared_task
def sweep_undelivered() -> dict[str, int]:
    """Beat, every minute: re-dispatch intents and deliveries a crash or an outage left."""
    return services.intents_sweep()
