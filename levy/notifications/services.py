"""Notifications: record the intent with the change, fan it out after commit.

``notify`` is what the domain services call. It writes a ``NotificationIntent`` (the
outbox) inside the caller's transaction — so the intent exists if and only if the
change committed — and asks for delivery once the transaction commits. Delivery
(``intent_deliver``, run by a Celery worker) resolves the recipients in the database
and writes every inbox row with set-based ``INSERT … SELECT … ON CONFLICT DO NOTHING``
in chunks, then queues the emails. If the broker is down at commit, or a worker dies
halfway, ``intents_sweep`` re-dispatches what was not delivered; the unique keys
(recipient, event_key) and (notification) make every re-run deliver nothing twice.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import time
import uuid
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from levy.common.db import (
    column,
    db_value,
    fetch_one,
    insert_unless_exists,
    model_columns,
    model_from_row,
    table,
    update_row,
)
from levy.monitoring.metrics import count_deliveries, count_fan_out
from levy.notifications.events import EVENT_SPECS, Priority, render
from levy.notifications.models import Delivery, DeliveryStatus, Notification, NotificationIntent
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


# --- delivery ------------------------------------------------------------------------------


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
        _queue_deliveries(intent, channel)
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
    from levy.estates.models import Membership

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
        INSERT INTO {table(Notification)}
            (id, recipient_id, intent_id, cluster_id, event, event_key, priority, title, body, context,
             created_at, read_at)
        SELECT gen_random_uuid(), t.user_id, v.intent_id, v.cluster_id, v.event, v.event_key, v.priority,
               v.title, v.body, v.context::jsonb, v.created_at, NULL
        FROM targets t JOIN v ON v.i = t.i
        ON CONFLICT (recipient_id, event_key) DO NOTHING
        RETURNING intent_id
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
                _queue_deliveries_of(ids, channel)
            with connection.cursor() as cursor:
                cursor.execute(_intent_delivered_sql(connection.vendor), [timezone.now(), ids])
        for intent_id, error in failed.items():
            NotificationIntent.objects.filter(pk=intent_id).update(last_error=error)
    for intent in ready:
        count_fan_out(intent.event, written=written.get(intent.pk, 0))
    if failed:
        logger.warning("%s intents failed in a batch: left for the sweep (%s)", len(failed), list(failed.values()))
    return len(intents), [intent.pk for intent in ready]


def _deliver_pending_one_by_one(*, priority: str, limit: int) -> int:
    """The portable batch (SQLite, the demo): each waiting intent delivered on its own."""
    ids = list(
        NotificationIntent.objects.filter(delivered_at__isnull=True, batched=True, priority=priority, last_error="")
        .filter(attempts__lt=settings.LEVY_INTENT_MAX_ATTEMPTS)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
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
        count = Notification.objects.filter(intent_id=intent_id).count()
        NotificationIntent.objects.filter(pk=intent_id).update(
            delivered_at=timezone.now(), delivered_count=count, last_error=""
        )
        return count
    pk = db_value(NotificationIntent, "id", intent_id)
    row = fetch_one(_intent_delivered_sql(connection.vendor), [timezone.now(), [pk]])
    return int(row[0]) if row else 0


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


def _insert_unnest(ids: list[Any], common: dict[str, Any]) -> int:
    """One statement for a whole chunk of recipients."""
    table = Notification._meta.db_table
    sql = f"""
        INSERT INTO {table}
            (id, recipient_id, intent_id, cluster_id, event, event_key, priority, title, body, context,
             created_at, read_at)
        SELECT gen_random_uuid(), recipient, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, NULL
        FROM unnest(%s::uuid[]) AS recipient
        ON CONFLICT (recipient_id, event_key) DO NOTHING
    """  # noqa: S608 - the table name is ours; every value is a parameter
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
        cursor.execute(sql, params)
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


def _queue_deliveries(intent: NotificationIntent, channel: str) -> None:
    """One pending delivery per inbox row of the intent, for ``channel``; idempotent."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        _queue_deliveries_of([intent.pk], channel)
        return
    have = set(Delivery.objects.filter(intent=intent, channel=channel).values_list("notification_id", flat=True))
    Delivery.objects.bulk_create(
        [
            Delivery(notification_id=pk, intent=intent, channel=channel, next_attempt_at=now)
            for pk in Notification.objects.filter(intent=intent).values_list("pk", flat=True)
            if pk not in have
        ],
        ignore_conflicts=True,
    )


def _queue_deliveries_of(intent_ids: list[Any], channel: str) -> None:
    """One pending delivery per inbox row of each intent, for ``channel``; one statement."""
    now = timezone.now()
    sql = f"""
        INSERT INTO {Delivery._meta.db_table}
            (id, notification_id, intent_id, channel, status, attempts, next_attempt_at, last_error,
             sent_at, updated_at)
        SELECT gen_random_uuid(), n.id, n.intent_id, %s, 'pending', 0, %s, '', NULL, %s
        FROM {Notification._meta.db_table} n
        WHERE n.intent_id = ANY(%s::uuid[])
        ON CONFLICT (notification_id, channel) DO NOTHING
    """  # noqa: S608 - table names are ours; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [channel, now, now, intent_ids])


def deliveries_send_due(
    *, intent_id: Any = None, intent_ids: list[Any] | None = None, batch_size: int = 200, max_batches: int = 50
) -> dict[str, int]:
    """Send due deliveries, channel by channel, in batches. Each delivery is claimed
    (``sending``) under ``SKIP LOCKED`` so two workers never send the same one; a
    failure is recorded and retried later with exponential backoff, up to
    ``LEVY_DELIVERY_MAX_ATTEMPTS`` attempts."""
    from levy.notifications.channels import channel_named

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
        Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.SENT, sent_at=now, last_error="", updated_at=now
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(_mark_sent_sql(connection.vendor), [DeliveryStatus.SENT, now, now, ids])


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
    from levy.accounts.models import User

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
        from levy.accounts.models import User

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
