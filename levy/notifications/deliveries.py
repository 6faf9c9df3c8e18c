"""Deliveries: each inbox row sent through each channel (email), claimed by one worker
at a time, retried with backoff after a failure.

``queue_deliveries`` writes one pending ``Delivery`` per inbox row and channel as the
fan-out ends; ``deliveries_send_due`` claims due deliveries in batches (``SKIP
LOCKED``), sends them and records the outcome. On PostgreSQL the claim and the marks
are fixed statements (``levy.common.db``); the ORM form beside each is the portable
path (SQLite, the demo) and its reference.
"""

from __future__ import annotations

import datetime
import functools
import logging
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from levy.accounts.models import User
from levy.common.db import column, db_value, model_columns, model_from_row, table
from levy.monitoring.metrics import count_deliveries
from levy.notifications.channels import channel_named
from levy.notifications.models import Delivery, DeliveryStatus, Notification, NotificationIntent

logger = logging.getLogger("levy.notifications")


def queue_deliveries(intent: NotificationIntent, channel: str) -> None:
    """One pending delivery per inbox row of the intent, for ``channel``; idempotent."""
    if connection.vendor == "postgresql":
        queue_deliveries_of([intent.pk], channel)
        return
    _queue_deliveries_orm(intent.pk, channel, timezone.now())


def _queue_deliveries_orm(intent_id: Any, channel: str, now: datetime.datetime) -> None:
    """The portable form of ``_queue_deliveries_sql`` (SQLite, the demo), and its reference."""
    have = set(Delivery.objects.filter(intent_id=intent_id, channel=channel).values_list("notification_id", flat=True))
    Delivery.objects.bulk_create(
        [
            Delivery(notification_id=pk, intent_id=intent_id, channel=channel, next_attempt_at=now)
            for pk in Notification.objects.filter(intent_id=intent_id).values_list("pk", flat=True)
            if pk not in have
        ],
        ignore_conflicts=True,
    )


@functools.cache
def _queue_deliveries_sql(vendor: str) -> str:
    d, n = Delivery, Notification
    columns = ", ".join(
        column(d, name)
        for name in (
            "id", "notification", "intent", "channel", "status", "attempts", "next_attempt_at", "last_error",
            "sent_at", "updated_at",
        )
    )  # fmt: skip
    return (
        f"INSERT INTO {table(d)} ({columns}) "  # noqa: S608 - identifiers from the models; every value is a parameter
        f"SELECT gen_random_uuid(), n.{column(n, 'id')}, n.{column(n, 'intent')}, %(channel)s, %(pending)s, 0, "
        f"%(now)s, '', NULL, %(now)s FROM {table(n)} n WHERE n.{column(n, 'intent')} = ANY(%(intents)s::uuid[]) "
        f"ON CONFLICT ({column(d, 'notification')}, {column(d, 'channel')}) DO NOTHING"
    )


def queue_deliveries_of(intent_ids: list[Any], channel: str) -> None:
    """One pending delivery per inbox row of each intent, for ``channel``; one statement."""
    now = timezone.now()
    params: dict[str, Any] = {
        "channel": channel,
        "pending": DeliveryStatus.PENDING.value,
        "now": now,
        "intents": intent_ids,
    }
    with connection.cursor() as cursor:
        cursor.execute(_queue_deliveries_sql(connection.vendor), params)


def deliveries_send_due(
    *, intent_id: Any = None, intent_ids: list[Any] | None = None, batch_size: int = 200, max_batches: int = 50
) -> dict[str, int]:
    """Send due deliveries, channel by channel, in batches. Each delivery is claimed
    (``sending``) under ``SKIP LOCKED`` so two workers never send the same one; a
    failure is recorded and retried later with exponential backoff, up to
    ``LEVY_DELIVERY_MAX_ATTEMPTS`` attempts."""
    counts = {"sent": 0, "failed": 0}
    for name in settings.LEVY_NOTIFICATION_CHANNELS:
        channel = channel_named(name)
        for _ in range(max_batches):
            claimed = _claim(channel=name, intent_id=intent_id, intent_ids=intent_ids, batch_size=batch_size)
            if not claimed:
                break
            failures = channel.send(claimed)
            now = timezone.now()
            sent_ids = [d.pk for d in claimed if d.pk not in failures]
            if sent_ids:
                _mark_sent(sent_ids, now)
            for delivery in claimed:
                error = failures.get(delivery.pk)
                if error is None:
                    continue
                delay = min(settings.LEVY_DELIVERY_RETRY_BASE_SECONDS * 2 ** (delivery.attempts - 1), 6 * 3600)
                Delivery.objects.filter(pk=delivery.pk).update(
                    updated_at=now,
                    status=DeliveryStatus.FAILED,
                    last_error=error[:2000],
                    next_attempt_at=now + datetime.timedelta(seconds=delay),
                )
                logger.warning("%s delivery %s failed (attempt %s): %s", name, delivery.pk, delivery.attempts, error)
            counts["sent"] += len(sent_ids)
            counts["failed"] += len(failures)
            count_deliveries(name, sent=len(sent_ids), failed=len(failures))
            if len(claimed) < batch_size:
                break  # nothing more was due when this batch was claimed
    return counts


def _mark_sent(ids: list[Any], now: datetime.datetime) -> None:
    if connection.vendor != "postgresql":
        _mark_sent_orm(ids, now)
        return
    with connection.cursor() as cursor:
        cursor.execute(_mark_sent_sql(connection.vendor), [DeliveryStatus.SENT, now, now, ids])


def _mark_sent_orm(ids: list[Any], now: datetime.datetime) -> None:
    """The portable form of ``_mark_sent_sql`` (SQLite), and its reference."""
    Delivery.objects.filter(pk__in=ids).update(status=DeliveryStatus.SENT, sent_at=now, last_error="", updated_at=now)


@functools.cache
def _mark_sent_sql(vendor: str) -> str:
    return (
        f"UPDATE {table(Delivery)} SET {column(Delivery, 'status')} = %s, {column(Delivery, 'sent_at')} = %s, "  # noqa: S608 - identifiers from the model
        f"{column(Delivery, 'last_error')} = '', {column(Delivery, 'updated_at')} = %s "
        f"WHERE {column(Delivery, 'id')} = ANY(%s::uuid[])"
    )


@functools.cache
def _claim_sql(vendor: str, for_intent: bool) -> str:
    """Claim up to a batch of due deliveries and read them with their notification and
    recipient: the queue's ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``,
    one statement. It restates ``_claim_orm``'s rule (tests compare the two)."""
    d, n, u = table(Delivery), table(Notification), table(User)

    def c(name: str) -> str:
        return column(Delivery, name)

    due = (
        f"{c('channel')} = %(channel)s AND {c('status')} IN (%(pending)s, %(failed)s) "
        f"AND {c('next_attempt_at')} <= %(now)s AND {c('attempts')} < %(max_attempts)s"
    )
    if for_intent:
        due += f" AND {c('intent')} = ANY(%(intents)s::uuid[])"
    return f"""
        WITH claimed AS (
            UPDATE {d} SET {c("status")} = %(sending)s, {c("attempts")} = {c("attempts")} + 1,
                {c("updated_at")} = %(now)s
            WHERE {c("id")} IN (
                SELECT {c("id")} FROM {d} WHERE {due}
                ORDER BY {c("next_attempt_at")} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
            RETURNING {model_columns(Delivery, d)}
        )
        SELECT {model_columns(Delivery, "claimed")}, {model_columns(Notification, "n")}, {model_columns(User, "u")}
        FROM claimed
        JOIN {n} n ON n.{column(Notification, "id")} = claimed.{c("notification")}
        JOIN {u} u ON u.{column(User, "id")} = n.{column(Notification, "recipient")}
    """  # noqa: S608 - identifiers from the models; every value is a parameter


def _claim(*, channel: str, intent_id: Any, batch_size: int, intent_ids: list[Any] | None = None) -> list[Delivery]:
    """Claim (``sending``, one attempt more) up to ``batch_size`` due deliveries (of
    one intent, of several, or any), each with its notification and recipient loaded.
    ``updated_at`` marks the claim: the sweep treats a claim older than
    LEVY_DELIVERY_STUCK_SECONDS as abandoned by a dead worker."""
    now = timezone.now()
    if intent_id is not None:
        intent_ids = [intent_id]
    if connection.vendor == "postgresql":
        params: dict[str, Any] = {
            "channel": channel,
            "pending": DeliveryStatus.PENDING,
            "failed": DeliveryStatus.FAILED,
            "sending": DeliveryStatus.SENDING,
            "now": now,
            "max_attempts": settings.LEVY_DELIVERY_MAX_ATTEMPTS,
            "batch": batch_size,
            "intents": None if intent_ids is None else [db_value(Delivery, "intent", i) for i in intent_ids],
        }
        with connection.cursor() as cursor:
            cursor.execute(_claim_sql(connection.vendor, intent_ids is not None), params)
            rows = cursor.fetchall()
        claimed = []
        for row in rows:
            delivery, at = model_from_row(Delivery, row)
            notification, at = model_from_row(Notification, row, at)
            notification.recipient = model_from_row(User, row, at)[0]
            delivery.notification = notification
            claimed.append(delivery)
        return claimed
    return _claim_orm(channel=channel, intent_ids=intent_ids, batch_size=batch_size, now=now)


def _claim_orm(
    *,
    channel: str,
    batch_size: int,
    now: datetime.datetime,
    intent_id: Any = None,
    intent_ids: list[Any] | None = None,
) -> list[Delivery]:
    """The portable claim (SQLite, the demo), and the reference the statement is tested against."""
    due = Q(
        channel=channel,
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED],
        next_attempt_at__lte=now,
        attempts__lt=settings.LEVY_DELIVERY_MAX_ATTEMPTS,
    )
    if intent_id is not None:
        intent_ids = [intent_id]
    if intent_ids is not None:
        due &= Q(intent_id__in=intent_ids)
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(due)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return []
        Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, updated_at=now
        )
    return list(Delivery.objects.filter(pk__in=ids).select_related("notification__recipient"))
