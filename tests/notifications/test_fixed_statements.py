"""Each fixed statement of the fan-out and the deliveries against its ORM reference: on
the same rows, both forms leave the same rows behind (each run in a transaction that is
rolled back, so that the other form starts from the same state). The claim of due
deliveries and the batch insert have theirs in test_notify.py and test_batch.py."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from levy.common.db import fetch_one
from levy.notifications.deliveries import (
    _mark_sent_orm,
    _mark_sent_sql,
    _queue_deliveries_orm,
    _queue_deliveries_sql,
)
from levy.notifications.events import NotificationEvents, Priority
from levy.notifications.fanout import (
    _claim_pending_sql,
    _insert_rows,
    _insert_unnest,
    _intent_attempt,
    _intent_attempt_orm,
    _intent_delivered_orm,
    _intent_delivered_sql,
    _waiting_batched,
)
from levy.notifications.models import Delivery, DeliveryStatus, Notification, NotificationIntent
from levy.notifications.recipients import Recipients
from tests.conftest import Estate

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)

INBOX_FIELDS = (
    "recipient_id", "intent_id", "cluster_id", "event", "event_key", "priority", "title", "body", "context",
    "created_at", "read_at",
)  # fmt: skip
DELIVERY_FIELDS = (
    "notification_id", "intent_id", "channel", "status", "attempts", "next_attempt_at", "last_error", "sent_at",
)  # fmt: skip


def _intent(estate: Estate, key: str, **fields: Any) -> NotificationIntent:
    values: dict[str, Any] = {
        "cluster": estate.cluster,
        "event": NotificationEvents.PAYMENT_REMINDER,
        "event_key": key,
        "recipients": Recipients.users(*[m.user_id for m in estate.residents]).to_json(),
        "context": {"bill_title": "Water", "amount": "10.00"},
        "created_at": NOW,
        **fields,
    }
    return NotificationIntent.objects.create(**values)


def _inbox(intent: NotificationIntent, *members: Any) -> list[Notification]:
    return [
        Notification.objects.create(
            recipient_id=m.user_id,
            intent=intent,
            cluster_id=intent.cluster_id,
            event=intent.event,
            event_key=intent.event_key,
            priority=intent.priority,
            title="t",
            body="b",
            context=intent.context,
            created_at=intent.created_at,
        )
        for m in members
    ]


def _both(statement: Callable[[], Any], reference: Callable[[], Any], snapshot: Callable[[], Any]) -> None:
    """Run each form on the same rows; both must answer the same and leave the same rows."""
    outcomes = []
    for form in (statement, reference):
        with transaction.atomic():
            outcomes.append((form(), snapshot()))
            transaction.set_rollback(True)
    assert outcomes[0] == outcomes[1]


def test_the_inbox_insert_writes_the_rows_the_orm_writes(estate: Estate) -> None:
    """``_insert_unnest`` against ``_insert_rows``: one chunk of recipients, one of whom
    already has the event (not written again, not counted)."""
    intent = _intent(estate, "k:inbox")
    _inbox(intent, estate.residents[0])
    ids = [m.user_id for m in (*estate.residents, estate.admin)]
    common = {
        "intent_id": intent.pk,
        "cluster_id": intent.cluster_id,
        "event": intent.event,
        "event_key": intent.event_key,
        "priority": intent.priority,
        "title": "Reminder: Water",
        "body": "NGN 10.00",
        "context": intent.context,
        "created_at": intent.created_at,
    }

    def rows() -> list[tuple[Any, ...]]:
        return list(Notification.objects.filter(intent=intent).order_by("recipient_id").values_list(*INBOX_FIELDS))

    _both(lambda: _insert_unnest(ids, common), lambda: _insert_rows(ids, common), rows)
    with transaction.atomic():
        assert _insert_unnest(ids, common) == len(ids) - 1
        assert len(rows()) == len(ids)
        assert _insert_unnest(ids, common) == 0  # a second run writes nothing twice
        transaction.set_rollback(True)


def test_counting_an_attempt_matches_the_orm(estate: Estate) -> None:
    """``_intent_attempt_sql`` against ``_intent_attempt_orm``: an undelivered intent
    counts one attempt more and is read back; a delivered one, or none, is not."""
    waiting = _intent(estate, "k:waiting", attempts=2)
    done = _intent(estate, "k:done", attempts=1, delivered_at=NOW)

    def state() -> list[tuple[Any, ...]]:
        return list(NotificationIntent.objects.order_by("event_key").values_list("event_key", "attempts"))

    def read(found: NotificationIntent | None) -> Any:
        return None if found is None else (found.pk, found.attempts, found.event_key, found.recipients, found.context)

    for intent_id in (waiting.pk, done.pk, "6f1c1f0e-0000-4000-8000-000000000000"):
        _both(lambda i=intent_id: read(_intent_attempt(i)), lambda i=intent_id: read(_intent_attempt_orm(i)), state)
    with transaction.atomic():
        assert read(_intent_attempt(waiting.pk))[1] == 3
        assert _intent_attempt(done.pk) is None
        transaction.set_rollback(True)


def test_marking_intents_delivered_matches_the_orm(estate: Estate) -> None:
    """``_intent_delivered_sql`` against ``_intent_delivered_orm``: the intent is marked
    delivered at the given time with the count of its inbox rows, its last error cleared."""
    intent = _intent(estate, "k:delivered", last_error="ValueError: earlier", attempts=1)
    _inbox(intent, *estate.residents)
    other = _intent(estate, "k:other")
    _inbox(other, estate.admin)

    def state() -> list[tuple[Any, ...]]:
        return list(
            NotificationIntent.objects.order_by("event_key").values_list(
                "event_key", "delivered_at", "delivered_count", "last_error", "attempts"
            )
        )

    def statement() -> int:
        return int(fetch_one(_intent_delivered_sql(connection.vendor), [NOW, [intent.pk]])[0])

    _both(statement, lambda: _intent_delivered_orm(intent.pk, NOW), state)
    with transaction.atomic():
        assert statement() == len(estate.residents)
        assert NotificationIntent.objects.get(pk=other.pk).delivered_at is None
        transaction.set_rollback(True)


def test_the_batch_claim_takes_the_intents_the_orm_selects(estate: Estate, settings: Any) -> None:
    """``_claim_pending_sql`` against ``_waiting_batched``: the oldest waiting batched
    intents of the priority, up to the limit — not one already delivered, failed, out of
    attempts, of another priority or fanned out on its own — each one attempt more."""
    settings.LEVY_INTENT_MAX_ATTEMPTS = 3
    minute = datetime.timedelta(minutes=1)
    _intent(estate, "k:1", batched=True, created_at=NOW - 5 * minute)
    _intent(estate, "k:2", batched=True, created_at=NOW - 4 * minute, attempts=2)
    _intent(estate, "k:3", batched=True, created_at=NOW - 3 * minute)
    _intent(estate, "k:4", batched=True, created_at=NOW - 2 * minute)
    _intent(estate, "k:delivered", batched=True, created_at=NOW - 9 * minute, delivered_at=NOW)
    _intent(estate, "k:failed", batched=True, created_at=NOW - 9 * minute, last_error="boom")
    _intent(estate, "k:spent", batched=True, created_at=NOW - 9 * minute, attempts=3)
    _intent(estate, "k:high", batched=True, created_at=NOW - 9 * minute, priority=Priority.HIGH)
    _intent(estate, "k:alone", batched=False, created_at=NOW - 9 * minute)

    def state() -> list[tuple[Any, ...]]:
        return list(NotificationIntent.objects.order_by("event_key").values_list("event_key", "attempts"))

    def statement() -> list[str]:
        params = {"priority": Priority.NORMAL, "max_attempts": settings.LEVY_INTENT_MAX_ATTEMPTS, "limit": 3}
        with connection.cursor() as cursor:
            cursor.execute(_claim_pending_sql(connection.vendor), params)
            claimed = {row[0] for row in cursor.fetchall()}
        return sorted(NotificationIntent.objects.filter(pk__in=claimed).values_list("event_key", flat=True))

    def reference() -> list[str]:
        chosen = list(_waiting_batched(priority=Priority.NORMAL, limit=3).values_list("pk", flat=True))
        NotificationIntent.objects.filter(pk__in=chosen).update(attempts=F("attempts") + 1)
        return sorted(NotificationIntent.objects.filter(pk__in=chosen).values_list("event_key", flat=True))

    _both(statement, reference, state)
    with transaction.atomic():
        assert statement() == ["k:1", "k:2", "k:3"]
        transaction.set_rollback(True)


def test_queueing_deliveries_matches_the_orm(estate: Estate) -> None:
    """``_queue_deliveries_sql`` against ``_queue_deliveries_orm``: one pending delivery
    per inbox row of the intent for the channel, none twice, other channels untouched."""
    intent = _intent(estate, "k:queue")
    rows = _inbox(intent, *estate.residents)
    other = _intent(estate, "k:other")
    _inbox(other, estate.admin)
    Delivery.objects.create(notification=rows[0], intent=intent, channel="email", status=DeliveryStatus.SENT)
    Delivery.objects.create(notification=rows[1], intent=intent, channel="sms")

    def state() -> set[tuple[Any, ...]]:
        return set(Delivery.objects.values_list(*DELIVERY_FIELDS))

    def statement() -> None:
        params = {"channel": "email", "pending": DeliveryStatus.PENDING.value, "now": NOW, "intents": [intent.pk]}
        with connection.cursor() as cursor:
            cursor.execute(_queue_deliveries_sql(connection.vendor), params)

    _both(statement, lambda: _queue_deliveries_orm(intent.pk, "email", NOW), state)
    with transaction.atomic():
        statement()
        assert Delivery.objects.filter(channel="email", status="pending").count() == len(rows) - 1
        transaction.set_rollback(True)


def test_marking_deliveries_sent_matches_the_orm(estate: Estate) -> None:
    """``_mark_sent_sql`` against ``_mark_sent_orm``: the deliveries named are sent at
    the given time, their last error cleared; the others are left as they were."""
    intent = _intent(estate, "k:sent")
    rows = _inbox(intent, *estate.residents)
    deliveries = [
        Delivery.objects.create(
            notification=row, intent=intent, channel="email", status=DeliveryStatus.SENDING, last_error="x"
        )
        for row in rows
    ]
    named = [d.pk for d in deliveries[:2]]

    def state() -> set[tuple[Any, ...]]:
        return set(Delivery.objects.values_list("pk", "status", "sent_at", "last_error", "updated_at"))

    def statement() -> None:
        with connection.cursor() as cursor:
            cursor.execute(_mark_sent_sql(connection.vendor), [DeliveryStatus.SENT, NOW, NOW, named])

    _both(statement, lambda: _mark_sent_orm(named, NOW), state)
    with transaction.atomic():
        statement()
        assert set(Delivery.objects.filter(status="sent").values_list("pk", flat=True)) == set(named)
        transaction.set_rollback(True)
