"""The fan-out: an intent of the outbox becomes every recipient's inbox row.

``intent_deliver`` (one intent, run by a Celery worker after the change commits)
resolves the recipients in the database and writes the inbox rows with set-based
``INSERT … SELECT … ON CONFLICT DO NOTHING`` in chunks, queues the deliveries
(``levy.notifications.deliveries``) and marks the intent delivered.
``intents_deliver_pending`` does the same for many intents with few recipients at
once, in one transaction. Both are safe to run any number of times, concurrently or
after a crash. On PostgreSQL each step is one fixed statement (``levy.common.db``);
the ORM form beside it is the portable path (SQLite, the demo) and its reference.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from levy.common.db import column, db_value, fetch_one, model_columns, model_from_row, table
from levy.estates.models import Membership
from levy.monitoring.metrics import count_fan_out
from levy.notifications.deliveries import deliveries_send_due, queue_deliveries, queue_deliveries_of
from levy.notifications.events import render
from levy.notifications.models import Notification, NotificationIntent
from levy.notifications.recipients import Recipients
from levy.notifications.services import batch_wake, queue_for, wake_key

logger = logging.getLogger("levy.notifications")


def intent_failed(intent_id: Any, error: BaseException) -> None:
    """Record why a fan-out failed; the task retries it, and the sweep after that."""
    NotificationIntent.objects.filter(pk=intent_id).update(last_error=f"{type(error).__name__}: {error}"[:2000])


def intent_deliver(intent_id: Any) -> int:
    """Write every recipient's inbox row for one intent, then queue its outbound
    deliveries (email, …).

    Safe to run any number of times, concurrently or after a crash: each chunk is an
    ``INSERT … ON CONFLICT DO NOTHING`` in its own transaction. Returns the number of
    inbox rows written by this run."""
    # Count the attempt and read the intent in one statement (none if delivered).
    intent = _intent_attempt(intent_id)
    if intent is None:
        return 0
    title, body = render(intent.event, intent.context)
    members = Recipients.from_json(intent.recipients).memberships(intent.cluster_id)
    written = _write_inbox(intent, members, title, body)
    channels = list(settings.LEVY_NOTIFICATION_CHANNELS)
    for channel in channels:
        queue_deliveries(intent, channel)
    total = _intent_delivered(intent.pk)
    count_fan_out(intent.event, written=written)
    if channels and total <= settings.LEVY_DELIVERY_INLINE_MAX:
        # A handful of emails (an acknowledgement, a payment): sent here, saving a second
        # task's round trip through the broker. Failures are recorded per delivery and
        # retried by the sweep, as from the sending task.
        try:
            deliveries_send_due(intent_id=intent.pk)
        except Exception:
            logger.warning("sending the deliveries of %s failed: left for the sweep", intent.pk, exc_info=True)
    elif channels:
        from levy.notifications.tasks import send_deliveries

        try:
            send_deliveries.apply_async(
                kwargs={"intent_id": str(intent.pk)}, queue=queue_for(intent.priority), retry=False
            )
        except Exception:
            logger.warning("broker unavailable: deliveries of %s left for the sweep", intent.pk, exc_info=True)
    return written


def intents_deliver_pending(*, priority: str, wait: bool = True) -> int:
    """Deliver the intents with few recipients that are waiting, many in one go: the
    work of ``deliver_pending``, woken by ``batch_wake``.

    Waits LEVY_NOTIFY_BATCH_WAIT_MS (``wait``) so that the commits of that moment join
    the batch, clears the wake flag (a commit from now on sends the next task), then
    claims up to LEVY_NOTIFY_BATCH_MAX waiting intents and writes their inbox rows,
    queues their emails and marks them delivered in one transaction; then sends the
    emails. A full batch wakes the next task first, so that another worker can take
    the rest. Returns the number of intents delivered."""
    if wait and settings.LEVY_NOTIFY_BATCH_WAIT_MS > 0:
        time.sleep(settings.LEVY_NOTIFY_BATCH_WAIT_MS / 1000)
    with contextlib.suppress(Exception):  # an unreachable cache: its flag expires by itself
        cache.delete(wake_key(priority))
    limit = max(int(settings.LEVY_NOTIFY_BATCH_MAX), 1)
    if connection.vendor != "postgresql":
        return _deliver_pending_one_by_one(priority=priority, limit=limit)
    claimed, delivered = _deliver_batch(priority=priority, limit=limit)
    if claimed >= limit:
        batch_wake(priority, wait=False)
    if delivered and settings.LEVY_NOTIFICATION_CHANNELS:
        try:
            deliveries_send_due(intent_ids=delivered)
        except Exception:
            logger.warning("sending the emails of %s intents failed: left for the sweep", len(delivered), exc_info=True)
    return len(delivered)


@functools.cache
def _claim_pending_sql(vendor: str) -> str:
    """Claim waiting intents with few recipients: row locks (``SKIP LOCKED``: another
    worker's batch is left alone) held until the batch's transaction ends, one attempt
    more. An intent whose delivery failed (``last_error``) is left to the sweep, which
    delivers it on its own."""
    t = table(NotificationIntent)

    def c(name: str) -> str:
        return column(NotificationIntent, name)

    return f"""
        UPDATE {t} SET {c("attempts")} = {c("attempts")} + 1
        WHERE {c("id")} IN (
            SELECT {c("id")} FROM {t}
            WHERE {c("delivered_at")} IS NULL AND {c("batched")} AND {c("priority")} = %(priority)s
                AND {c("last_error")} = '' AND {c("attempts")} < %(max_attempts)s
            ORDER BY {c("created_at")} LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
        RETURNING {model_columns(NotificationIntent, t)}
    """  # noqa: S608 - identifiers from the model; every value is a parameter


@functools.cache
def _insert_batch_sql(vendor: str) -> str:
    """Every inbox row of a batch of intents in one statement. The recipients restate
    ``Recipients.memberships`` for few recipients (``Recipients.few_targets``): members
    of the intent's estate among its user ids, and its active members holding one of
    its roles."""
    m = table(Membership)

    def mc(name: str) -> str:
        return column(Membership, name)

    return f"""
        WITH v AS (
            SELECT * FROM unnest(
                %(intent)s::uuid[], %(cluster)s::uuid[], %(event)s::text[], %(event_key)s::text[],
                %(priority)s::text[], %(title)s::text[], %(body)s::text[], %(context)s::text[],
                %(created_at)s::timestamptz[]
            ) WITH ORDINALITY AS v(intent_id, cluster_id, event, event_key, priority, title, body, context,
                                   created_at, i)
        ), targets AS (
            SELECT v.i, m.{mc("user")} AS user_id
            FROM unnest(%(user_i)s::bigint[], %(user_id)s::uuid[]) AS u(i, user_id)
            JOIN v ON v.i = u.i
            JOIN {m} m ON m.{mc("cluster")} = v.cluster_id AND m.{mc("user")} = u.user_id
            UNION
            SELECT v.i, m.{mc("user")}
            FROM unnest(%(role_i)s::bigint[], %(role)s::text[]) AS r(i, role)
            JOIN v ON v.i = r.i
            JOIN {m} m ON m.{mc("cluster")} = v.cluster_id AND m.{mc("active")} AND m.{mc("role")} = r.role
        )
        {
        _inbox_insert(
            "SELECT gen_random_uuid(), t.user_id, v.intent_id, v.cluster_id, v.event, v.event_key, v.priority, "
            "v.title, v.body, v.context::jsonb, v.created_at, NULL FROM targets t JOIN v ON v.i = t.i"
        )
    }
        RETURNING {column(Notification, "intent")}
    """  # noqa: S608 - identifiers from the models; every value is a parameter


def _deliver_batch(*, priority: str, limit: int) -> tuple[int, list[Any]]:
    """One transaction: claim, write every inbox row, queue the deliveries, mark
    delivered. A worker killed halfway leaves nothing (the transaction rolls back, the
    locks go) and the intents wait for the next batch or the sweep. Returns (intents
    claimed, ids of the intents delivered)."""
    params: dict[str, list[Any]] = {
        key: []
        for key in (
            "intent", "cluster", "event", "event_key", "priority", "title", "body", "context", "created_at",
            "user_i", "user_id", "role_i", "role",
        )
    }  # fmt: skip
    failed: dict[Any, str] = {}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _claim_pending_sql(connection.vendor),
                {"priority": priority, "max_attempts": settings.LEVY_INTENT_MAX_ATTEMPTS, "limit": limit},
            )
            rows = cursor.fetchall()
        intents = [model_from_row(NotificationIntent, row)[0] for row in rows]
        ready = []
        for intent in intents:
            try:
                title, body = render(intent.event, intent.context)
                user_ids, roles = Recipients.from_json(intent.recipients).few_targets()
            except Exception as exc:  # this intent only: the sweep delivers it on its own
                failed[intent.pk] = f"{type(exc).__name__}: {exc}"[:2000]
                continue
            ready.append(intent)
            i = len(ready)  # WITH ORDINALITY counts from 1
            for key, value in (
                ("intent", intent.pk),
                ("cluster", intent.cluster_id),
                ("event", intent.event),
                ("event_key", intent.event_key),
                ("priority", intent.priority),
                ("title", title),
                ("body", body),
                ("context", json.dumps(intent.context, cls=DjangoJSONEncoder)),
                ("created_at", intent.created_at),
            ):
                params[key].append(value)
            params["user_i"].extend([i] * len(user_ids))
            params["user_id"].extend(user_ids)
            params["role_i"].extend([i] * len(roles))
            params["role"].extend(roles)
        written: dict[Any, int] = {}
        if ready:
            with connection.cursor() as cursor:
                cursor.execute(_insert_batch_sql(connection.vendor), params)
                for (intent_id,) in cursor.fetchall():
                    written[intent_id] = written.get(intent_id, 0) + 1
            ids = [intent.pk for intent in ready]
            for channel in settings.LEVY_NOTIFICATION_CHANNELS:
                queue_deliveries_of(ids, channel)
            with connection.cursor() as cursor:
                cursor.execute(_intent_delivered_sql(connection.vendor), [timezone.now(), ids])
        for intent_id, error in failed.items():
            NotificationIntent.objects.filter(pk=intent_id).update(last_error=error)
    for intent in ready:
        count_fan_out(intent.event, written=written.get(intent.pk, 0))
    if failed:
        logger.warning("%s intents failed in a batch: left for the sweep (%s)", len(failed), list(failed.values()))
    return len(intents), [intent.pk for intent in ready]


def _waiting_batched(*, priority: str, limit: int) -> QuerySet[NotificationIntent]:
    """The waiting intents with few recipients, oldest first: those ``_claim_pending_sql``
    claims (this is its reference), and the portable batch's list."""
    return (
        NotificationIntent.objects.filter(delivered_at__isnull=True, batched=True, priority=priority, last_error="")
        .filter(attempts__lt=settings.LEVY_INTENT_MAX_ATTEMPTS)
        .order_by("created_at")[:limit]
    )


def _deliver_pending_one_by_one(*, priority: str, limit: int) -> int:
    """The portable batch (SQLite, the demo): each waiting intent delivered on its own."""
    ids = list(_waiting_batched(priority=priority, limit=limit).values_list("pk", flat=True))
    for intent_id in ids:
        try:
            intent_deliver(intent_id)
        except Exception as exc:
            intent_failed(intent_id, exc)
    return len(ids)


@functools.cache
def _intent_attempt_sql(vendor: str) -> str:
    attempts, delivered = column(NotificationIntent, "attempts"), column(NotificationIntent, "delivered_at")
    return (
        f"UPDATE {table(NotificationIntent)} SET {attempts} = {attempts} + 1 "  # noqa: S608 - identifiers from the model
        f"WHERE {column(NotificationIntent, 'id')} = %s AND {delivered} IS NULL "
        f"RETURNING {model_columns(NotificationIntent, table(NotificationIntent))}"
    )


def _intent_attempt(intent_id: Any) -> NotificationIntent | None:
    try:
        pk = db_value(NotificationIntent, "id", intent_id)
    except (ValueError, TypeError, ValidationError):
        return None
    row = fetch_one(_intent_attempt_sql(connection.vendor), [pk])  # one statement: atomic as it is
    return None if row is None else model_from_row(NotificationIntent, row)[0]


def _intent_attempt_orm(intent_id: Any) -> NotificationIntent | None:
    """``_intent_attempt`` through the ORM (two statements): its reference."""
    with transaction.atomic():
        counted = NotificationIntent.objects.filter(pk=intent_id, delivered_at__isnull=True).update(
            attempts=F("attempts") + 1
        )
        return NotificationIntent.objects.get(pk=intent_id) if counted else None


@functools.cache
def _intent_delivered_sql(vendor: str) -> str:
    """Mark intents delivered, each with the count of its inbox rows; one statement."""
    t = table(NotificationIntent)
    return (
        f"UPDATE {t} SET {column(NotificationIntent, 'delivered_at')} = %s, "  # noqa: S608 - identifiers from the models
        f"{column(NotificationIntent, 'delivered_count')} = (SELECT count(*) FROM {table(Notification)} n "
        f"WHERE n.{column(Notification, 'intent')} = {t}.{column(NotificationIntent, 'id')}), "
        f"{column(NotificationIntent, 'last_error')} = '' "
        f"WHERE {column(NotificationIntent, 'id')} = ANY(%s::uuid[]) "
        f"RETURNING {column(NotificationIntent, 'delivered_count')}"
    )


def _intent_delivered(intent_id: Any) -> int:
    """Mark the intent delivered with the count of its inbox rows; one statement on
    PostgreSQL, two through the ORM elsewhere (SQLite, the demo, has no arrays)."""
    if connection.vendor != "postgresql":
        return _intent_delivered_orm(intent_id, timezone.now())
    pk = db_value(NotificationIntent, "id", intent_id)
    row = fetch_one(_intent_delivered_sql(connection.vendor), [timezone.now(), [pk]])
    return int(row[0]) if row else 0


def _intent_delivered_orm(intent_id: Any, now: datetime.datetime) -> int:
    """The portable form of ``_intent_delivered_sql`` (SQLite), and its reference."""
    count = Notification.objects.filter(intent_id=intent_id).count()
    NotificationIntent.objects.filter(pk=intent_id).update(delivered_at=now, delivered_count=count, last_error="")
    return count


def _write_inbox(intent: NotificationIntent, members: QuerySet[Any], title: str, body: str) -> int:
    """Insert the inbox rows in chunks of recipients, in user-id order (keyset), each
    chunk one statement in its own transaction."""
    chunk = int(settings.LEVY_FANOUT_CHUNK)
    pause = float(settings.LEVY_FANOUT_CHUNK_PAUSE_SECONDS)
    user_ids = members.order_by("user_id").values_list("user_id", flat=True)
    common = {
        "intent_id": intent.pk,
        "cluster_id": intent.cluster_id,
        "event": intent.event,
        "event_key": intent.event_key,
        "priority": intent.priority,
        "title": title,
        "body": body,
        "context": intent.context,
        "created_at": intent.created_at,
    }
    written = 0
    last: Any = None
    while True:
        page = user_ids if last is None else user_ids.filter(user_id__gt=last)
        ids = list(page[:chunk])
        if not ids:
            return written
        if connection.vendor == "postgresql":
            written += _insert_unnest(ids, common)  # one statement: atomic, and committed, as it is
        else:
            with transaction.atomic():
                written += _insert_rows(ids, common)
        last = ids[-1]
        if len(ids) < chunk:
            return written
        if pause:
            time.sleep(pause)


# The columns of an inbox row, in the order the fixed inserts write them.
INBOX_COLUMNS = (
    "id", "recipient", "intent", "cluster", "event", "event_key", "priority", "title", "body", "context",
    "created_at", "read_at",
)  # fmt: skip


def _inbox_insert(select: str) -> str:
    """``INSERT`` of inbox rows from ``select`` (its values in ``INBOX_COLUMNS``' order),
    skipping the recipients who already have the event (the unique (recipient, event_key))."""
    columns = ", ".join(column(Notification, name) for name in INBOX_COLUMNS)
    unique = f"{column(Notification, 'recipient')}, {column(Notification, 'event_key')}"
    return f"INSERT INTO {table(Notification)} ({columns}) {select} ON CONFLICT ({unique}) DO NOTHING"


@functools.cache
def _insert_unnest_sql(vendor: str) -> str:
    """One chunk of recipients' inbox rows of one intent: the rows ``_insert_rows`` (the
    ORM form, its reference) writes, in one statement."""
    return _inbox_insert(
        "SELECT gen_random_uuid(), recipient, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, NULL "
        "FROM unnest(%s::uuid[]) AS recipient"
    )


def _insert_unnest(ids: list[Any], common: dict[str, Any]) -> int:
    """One statement for a whole chunk of recipients."""
    params = [
        common["intent_id"],
        common["cluster_id"],
        common["event"],
        common["event_key"],
        common["priority"],
        common["title"],
        common["body"],
        json.dumps(common["context"], cls=DjangoJSONEncoder),
        common["created_at"],
        ids,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_unnest_sql(connection.vendor), params)
        return int(cursor.rowcount)


def _insert_rows(ids: list[Any], common: dict[str, Any]) -> int:
    """The portable path (SQLite, the demo): skip recipients who already have the row."""
    already = set(
        Notification.objects.filter(event_key=common["event_key"], recipient_id__in=ids).values_list(
            "recipient_id", flat=True
        )
    )
    rows = [Notification(recipient_id=user_id, **common) for user_id in ids if user_id not in already]
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
