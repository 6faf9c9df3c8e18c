"""Gauges computed when Prometheus scrapes the web server: the notification backlog
(PostgreSQL) and the Celery queues the fan-out and the deliveries wait in (the
broker's Redis). ``config/urls.py`` hands :class:`LiveStateCollector` to the
``/metrics`` view (``levy.monitoring.views``), which sits below the apps it reports on.

Each scrape costs two small indexed queries and one Redis round trip. A database or
broker that does not answer turns its ``levy_*_up`` gauge to 0; the scrape itself
still succeeds, quickly (Redis calls time out after half a second).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from levy.notifications.models import Delivery, DeliveryStatus, NotificationIntent
from levy.notifications.services import HIGH_QUEUE, NORMAL_QUEUE

logger = logging.getLogger("levy.monitoring")

BROKER_TIMEOUT_SECONDS = 0.5
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
DEFAULT_PRIORITY_SEPARATOR = "\x06\x16"


def monitored_queues() -> list[str]:
    queues = [HIGH_QUEUE, NORMAL_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE]
    return list(dict.fromkeys(queues))


# --- PostgreSQL ------------------------------------------------------------------------------


def notification_backlog() -> dict[str, Any]:
    """Undelivered intents by state, the age of the oldest, and outbound deliveries
    not yet settled, by channel and state.

    Both queries read only rows of the partial indexes ``intent_undelivered_idx``
    (``delivered_at IS NULL``) and ``delivery_due_idx`` (pending, sending, failed):
    their cost follows the backlog, not the size of the tables."""
    max_intent_attempts = settings.LEVY_INTENT_MAX_ATTEMPTS
    max_delivery_attempts = settings.LEVY_DELIVERY_MAX_ATTEMPTS
    given_up = Q(attempts__gte=max_intent_attempts)
    intents = NotificationIntent.objects.filter(delivered_at__isnull=True).aggregate(
        not_dispatched=Count("pk", filter=~given_up & Q(dispatched_at__isnull=True)),
        dispatched=Count("pk", filter=~given_up & Q(dispatched_at__isnull=False)),
        given_up=Count("pk", filter=given_up),
        oldest=Min("created_at"),
    )
    oldest = intents.pop("oldest")
    age = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0

    channels = list(settings.LEVY_NOTIFICATION_CHANNELS)
    waiting = {(channel, state): 0 for channel in channels for state in ("pending", "sending", "retrying")}
    deliveries_given_up = dict.fromkeys(channels, 0)
    exhausted = Q(attempts__gte=max_delivery_attempts)
    rows = (
        Delivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED])
        .values("channel", "status")
        .annotate(total=Count("pk"), exhausted=Count("pk", filter=exhausted))
        .order_by()
    )
    for row in rows:
        channel, status = row["channel"], row["status"]
        if status == DeliveryStatus.FAILED:
            waiting[(channel, "retrying")] = waiting.get((channel, "retrying"), 0) + row["total"] - row["exhausted"]
            deliveries_given_up[channel] = deliveries_given_up.get(channel, 0) + row["exhausted"]
        else:
            waiting[(channel, str(status))] = waiting.get((channel, str(status)), 0) + row["total"]
    return {"intents": intents, "age": age, "waiting": waiting, "deliveries_given_up": deliveries_given_up}


def database_metrics() -> Iterator[Metric]:
    up = GaugeMetricFamily("levy_database_up", "1 if PostgreSQL answered this scrape's queries, else 0.")
    try:
        backlog = notification_backlog()
    except Exception:
        logger.warning("metrics: the notification backlog could not be read", exc_info=True)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up

    intents = GaugeMetricFamily(
        "levy_notification_intents_undelivered",
        "Notification intents not yet fanned out, by state: not_dispatched (never handed to the broker), "
        "dispatched (handed to the broker, not done), given_up (LEVY_INTENT_MAX_ATTEMPTS reached).",
        labels=["state"],
    )
    for state, count in backlog["intents"].items():
        intents.add_metric([state], count)
    yield intents

    yield GaugeMetricFamily(
        "levy_notification_backlog_age_seconds",
        "Seconds since the oldest notification intent not yet fanned out was created (0 if none).",
        value=backlog["age"],
    )

    waiting = GaugeMetricFamily(
        "levy_notification_deliveries_waiting",
        "Outbound deliveries not yet sent, by channel and state: pending, sending (claimed by a worker), "
        "retrying (failed, attempts left).",
        labels=["channel", "state"],
    )
    for (channel, state), count in sorted(backlog["waiting"].items()):
        waiting.add_metric([channel, state], count)
    yield waiting

    given_up = GaugeMetricFamily(
        "levy_notification_deliveries_given_up",
        "Outbound deliveries that failed LEVY_DELIVERY_MAX_ATTEMPTS times and are no longer retried, by channel.",
        labels=["channel"],
    )
    for channel, count in sorted(backlog["deliveries_given_up"].items()):
        given_up.add_metric([channel], count)
    yield given_up


# --- the broker ------------------------------------------------------------------------------

_clients: dict[str, redis.Redis] = {}


def _broker_client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_TIMEOUT_SECONDS, socket_timeout=BROKER_TIMEOUT_SECONDS
        )
        _clients[url] = client
    return client


def broker_url() -> str | None:
    """The Celery broker's URL if it is Redis (the first, for a failover list)."""
    from config.celery import app

    url = str(app.conf.broker_url or "").split(";")[0].strip()
    return url if urlparse(url).scheme in {"redis", "rediss"} else None


def queue_keys(queue: str, options: dict[str, Any]) -> list[str]:
    """The Redis lists that hold ``queue``'s messages: one per priority step, as kombu's
    Redis transport names them."""
    prefix = str(options.get("global_keyprefix", ""))
    separator = str(options.get("sep", DEFAULT_PRIORITY_SEPARATOR))
    steps = options.get("priority_steps", DEFAULT_PRIORITY_STEPS)
    return [f"{prefix}{queue}" if not step else f"{prefix}{queue}{separator}{step}" for step in steps]


def queue_lengths(url: str, queues: Iterable[str]) -> dict[str, int]:
    from config.celery import app

    options = dict(app.conf.broker_transport_options or {})
    keys = {queue: queue_keys(queue, options) for queue in queues}
    pipe = _broker_client(url).pipeline(transaction=False)
    for queue_key_list in keys.values():
        for key in queue_key_list:
            pipe.llen(key)
    results = iter(pipe.execute())
    return {queue: sum(int(next(results)) for _ in queue_key_list) for queue, queue_key_list in keys.items()}


def broker_metrics() -> Iterator[Metric]:
    url = broker_url()
    if url is None:  # in-process tasks (the demo): no broker to watch
        return
    up = GaugeMetricFamily("levy_broker_up", "1 if the Celery broker (Redis) answered this scrape, else 0.")
    try:
        lengths = queue_lengths(url, monitored_queues())
    except redis.RedisError as exc:
        logger.warning("metrics: the broker did not answer: %s", exc)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    length = GaugeMetricFamily(
        "levy_celery_queue_length", "Tasks waiting in each Celery queue (LLEN in the broker).", labels=["queue"]
    )
    for queue, count in lengths.items():
        length.add_metric([queue], count)
    yield length


class LiveStateCollector:
    """Registered only in the web server's /metrics: the backlog and queue gauges."""

    def collect(self) -> Iterator[Metric]:
        yield from database_metrics()
        yield from broker_metrics()
