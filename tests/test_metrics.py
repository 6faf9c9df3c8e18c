"""``/metrics``: every metric the operations guide lists is there and moves when its
event happens; the token guards it; alerts and the dashboard name only metrics that
exist.

These tests run in one process (no PROMETHEUS_MULTIPROC_DIR), where /metrics shows
this process's counters: tasks run in-process, so the worker-side counters move here
too. tests/test_metrics_processes.py covers gunicorn's multiprocess mode and a real
worker's metrics port.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from levy.billing.payments import bill_pay, transaction_retry
from levy.billing.services import bill_acknowledge
from levy.common.errors import InsufficientFundsError, RuleViolation
from levy.notifications.backlog import queue_keys
from levy.notifications.models import Delivery, DeliveryStatus, Notification, NotificationIntent
from levy.wallets.models import Transaction, TransactionStatus
from tests.conftest import Estate, access, committed, new_key
from tests.notifications.test_worker import RedisServer, free_port, redis_server  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "levy-dashboard.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(**headers: str) -> Samples:
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a sample that does not exist yet (a counter not yet
    incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def exists(samples: Samples, name: str, **labels: str) -> bool:
    return (name, frozenset(labels.items())) in samples


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:  # noqa: F811 - the fixture imported above
    """The Celery broker is a throwaway redis-server; yields a client of it."""
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = redis_server.url
    forget_broker_connections()
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        yield client
    finally:
        client.close()
        celery_app.conf.broker_url = previous
        # The pools cache connections to the throwaway server, stopped after this test:
        # kept, every later task (in-process ones too) would fail to reach a broker.
        forget_broker_connections()


def forget_broker_connections() -> None:
    """Drop (not close: kombu shares them by broker URL) the app's cached pools."""
    celery_app.amqp._producer_pool = None
    celery_app._pool = None


# --- requests ---------------------------------------------------------------------------------


def test_a_request_is_counted_and_timed_under_its_route(db: None) -> None:
    before = scrape()
    assert Client().get("/healthz").status_code == 200
    after = scrape()
    labels = {"method": "GET", "route": "healthz", "status": "200"}
    assert value(after, "levy_http_requests_total", **labels) == value(before, "levy_http_requests_total", **labels) + 1
    count = "levy_http_request_duration_seconds_count"
    assert value(after, count, route="healthz") == value(before, count, route="healthz") + 1
    # the buckets span 5 ms to 5 s
    buckets = {dict(labels)["le"] for name, labels in after if name == "levy_http_request_duration_seconds_bucket"}
    assert {"0.005", "0.05", "0.1", "0.25", "1.0", "5.0", "+Inf"} <= buckets


def test_routes_are_url_patterns_never_raw_paths(db: None) -> None:
    cluster_id = uuid.uuid4()
    missing = f"/no-such-page-{uuid.uuid4().hex}"
    before = scrape()
    bills = Client().get(f"/api/v1/clusters/{cluster_id}/bills/")
    assert bills.status_code == 401
    assert Client().get(missing).status_code == 404
    assert Client().generic("BREW", "/healthz").status_code == 200
    after = scrape()

    route = "api/v1/clusters/<str:cluster_id>/bills/"
    labels = {"method": "GET", "route": route, "status": "401"}
    assert value(after, "levy_http_requests_total", **labels) == value(before, "levy_http_requests_total", **labels) + 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert (
        value(after, "levy_http_requests_total", **unmatched)
        == value(before, "levy_http_requests_total", **unmatched) + 1
    )
    odd = {"method": "other", "route": "healthz", "status": "200"}
    assert value(after, "levy_http_requests_total", **odd) == value(before, "levy_http_requests_total", **odd) + 1
    # the API's error code is counted by route
    error = {"route": route, "code": "not_authenticated"}
    assert value(after, "levy_api_errors_total", **error) == value(before, "levy_api_errors_total", **error) + 1
    text = Client().get("/metrics").content.decode()
    assert str(cluster_id) not in text
    assert missing not in text
    assert "BREW" not in text


# --- payments ---------------------------------------------------------------------------------


def payments(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["outcome"], dict(labels)["code"]): number
        for (name, labels), number in samples.items()
        if name == "levy_payment_attempts_total"
    }


def moved(before: Samples, after: Samples) -> dict[tuple[str, str], float]:
    old, new = payments(before), payments(after)
    return {key: new[key] - old.get(key, 0.0) for key in new if new[key] != old.get(key, 0.0)}


def test_payments_are_counted_by_outcome(estate: Estate) -> None:
    resident = estate.residents[0]
    bill = estate.wide_bill()
    me = access(resident)
    before = scrape()

    with pytest.raises(RuleViolation) as refused:
        bill_pay(access=me, bill=bill, idempotency_key=new_key())
    assert refused.value.code == "bill_not_acknowledged"
    with committed():
        bill_acknowledge(access=me, bill=bill)
    with committed(), pytest.raises(InsufficientFundsError):
        bill_pay(access=me, bill=bill, idempotency_key=new_key())
    failed = Transaction.objects.get(bill=bill, payer_id=resident.user_id, status=TransactionStatus.FAILED)
    estate.fund(resident, "20000.00")
    with committed():
        paid = transaction_retry(access=me, failed=failed, idempotency_key=new_key())
    assert paid.status == TransactionStatus.COMPLETED
    with pytest.raises(RuleViolation):  # a completed payment cannot be retried
        transaction_retry(access=me, failed=paid, idempotency_key=new_key())

    assert moved(before, scrape()) == {
        ("refused", "bill_not_acknowledged"): 1,
        ("failed", "insufficient_funds"): 1,
        ("completed", ""): 1,
        ("refused", "transaction_not_retryable"): 1,
    }


def test_a_payment_is_not_counted_until_its_transaction_commits(estate: Estate) -> None:
    resident = estate.residents[0]
    bill = estate.wide_bill()
    me = access(resident)
    with committed():
        bill_acknowledge(access=me, bill=bill)
    estate.fund(resident, "20000.00")
    key = new_key()
    before = scrape()

    class RolledBack(Exception):
        pass

    with committed(), pytest.raises(RolledBack), transaction.atomic():
        bill_pay(access=me, bill=bill, idempotency_key=key)
        raise RolledBack
    assert moved(before, scrape()) == {}
    assert not Transaction.objects.filter(bill=bill, payer_id=resident.user_id).exists()

    with committed():
        bill_pay(access=me, bill=bill, idempotency_key=key)
    assert moved(before, scrape()) == {("completed", ""): 1}
    with committed():  # a replay moves no money and is not a new attempt
        bill_pay(access=me, bill=bill, idempotency_key=key)
    assert moved(before, scrape()) == {("completed", ""): 1}


def test_payments_through_the_api_are_counted(estate: Estate) -> None:
    from tests.api.conftest import api_as, base

    resident = estate.residents[0]
    bill = estate.wide_bill()
    estate.fund(resident, "20000.00")
    api = api_as(resident)
    assert api.post(f"{base(estate)}/bills/{bill.pk}/acknowledge/").status_code in {200, 201}
    before = scrape()
    paid = api.post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    assert paid.status_code == 201, paid.json()
    again = api.post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    assert again.status_code == 409
    after = scrape()
    assert moved(before, after) == {("completed", ""): 1, ("refused", "bill_already_paid"): 1}
    pay_route = "api/v1/clusters/<str:cluster_id>/bills/<str:bill_id>/pay/"
    error = {"route": pay_route, "code": "bill_already_paid"}
    assert value(after, "levy_api_errors_total", **error) == value(before, "levy_api_errors_total", **error) + 1


# --- notifications ----------------------------------------------------------------------------


def make_intent(estate: Estate, **fields: Any) -> NotificationIntent:
    return NotificationIntent.objects.create(
        cluster=estate.cluster,
        event="PAYMENT_DUE",
        event_key=f"TEST:{uuid.uuid4().hex}",
        recipients={"kind": "users", "ids": [str(estate.residents[0].user_id)]},
        context={},
        **fields,
    )


def make_delivery(estate: Estate, intent: NotificationIntent, **fields: Any) -> Delivery:
    notification = Notification.objects.create(
        recipient=estate.residents[0].user,
        cluster=estate.cluster,
        event=intent.event,
        event_key=intent.event_key,
        intent=intent,
        title="t",
        body="b",
    )
    return Delivery.objects.create(notification=notification, intent=intent, channel="email", **fields)


def test_waiting_and_abandoned_deliveries_are_gauged(estate: Estate, settings: Any) -> None:
    settings.LEVY_DELIVERY_MAX_ATTEMPTS = 3
    intent = make_intent(estate, delivered_at=timezone.now())
    before = scrape()
    for state in ("pending", "sending", "retrying"):
        assert exists(before, "levy_notification_deliveries_waiting", channel="email", state=state)

    make_delivery(estate, intent)
    after_pending = scrape()
    pending = {"channel": "email", "state": "pending"}
    waiting = "levy_notification_deliveries_waiting"
    assert value(after_pending, waiting, **pending) == value(before, waiting, **pending) + 1

    other = make_intent(estate, delivered_at=timezone.now())
    make_delivery(estate, other, status=DeliveryStatus.FAILED, attempts=1)
    third = make_intent(estate, delivered_at=timezone.now())
    make_delivery(estate, third, status=DeliveryStatus.FAILED, attempts=3)
    fourth = make_intent(estate, delivered_at=timezone.now())
    make_delivery(estate, fourth, status=DeliveryStatus.SENT, attempts=1, sent_at=timezone.now())
    after = scrape()
    retrying = {"channel": "email", "state": "retrying"}
    assert value(after, waiting, **retrying) == value(before, waiting, **retrying) + 1
    given_up = "levy_notification_deliveries_given_up"
    assert value(after, given_up, channel="email") == value(before, given_up, channel="email") + 1
    assert value(after, waiting, **pending) == value(before, waiting, **pending) + 1  # sent is not waiting


def test_the_backlog_age_is_that_of_the_oldest_undelivered_intent(estate: Estate, settings: Any) -> None:
    assert value(scrape(), "levy_notification_backlog_age_seconds") == 0
    now = timezone.now()
    old = make_intent(estate, created_at=now - datetime.timedelta(seconds=120))
    make_intent(estate, created_at=now - datetime.timedelta(seconds=30), dispatched_at=now)
    settings.LEVY_INTENT_MAX_ATTEMPTS = 2
    make_intent(estate, created_at=now - datetime.timedelta(seconds=10), attempts=2)
    make_intent(estate, created_at=now - datetime.timedelta(hours=5), delivered_at=now)  # done: not counted

    samples = scrape()
    age = value(samples, "levy_notification_backlog_age_seconds")
    assert 120 <= age < 180
    undelivered = "levy_notification_intents_undelivered"
    assert value(samples, undelivered, state="not_dispatched") == 1
    assert value(samples, undelivered, state="dispatched") == 1
    assert value(samples, undelivered, state="given_up") == 1

    NotificationIntent.objects.filter(pk=old.pk).update(delivered_at=timezone.now())
    assert 30 <= value(scrape(), "levy_notification_backlog_age_seconds") < 90


def test_fan_outs_and_sends_are_counted(estate: Estate, settings: Any) -> None:
    settings.LEVY_NOTIFICATION_CHANNELS = ["email"]
    settings.LEVY_DELIVERY_INLINE_MAX = 0  # the emails in their own task
    before = scrape()
    estate.wide_bill()  # three residents: fanned out and emailed in-process
    after = scrape()
    fanned = "levy_notification_intents_fanned_out_total"
    assert value(after, fanned, event="PAYMENT_DUE") == value(before, fanned, event="PAYMENT_DUE") + 1
    rows = "levy_notification_inbox_rows_written_total"
    assert value(after, rows, event="PAYMENT_DUE") == value(before, rows, event="PAYMENT_DUE") + 3
    sent = {"channel": "email", "outcome": "sent"}
    deliveries = "levy_notification_deliveries_total"
    assert value(after, deliveries, **sent) == value(before, deliveries, **sent) + 3
    tasks = "levy_celery_tasks_total"
    for task in ("levy.notifications.tasks.deliver_intent", "levy.notifications.tasks.send_deliveries"):
        labels = {"task": task, "outcome": "succeeded"}
        assert value(after, tasks, **labels) == value(before, tasks, **labels) + 1


def test_a_small_intent_sends_its_emails_in_the_fan_out_task(estate: Estate, settings: Any) -> None:
    settings.LEVY_NOTIFICATION_CHANNELS = ["email"]
    settings.LEVY_DELIVERY_INLINE_MAX = 3
    before = scrape()
    estate.wide_bill()  # three residents: at the limit, so sent inline
    after = scrape()
    sent = {"channel": "email", "outcome": "sent"}
    deliveries = "levy_notification_deliveries_total"
    assert value(after, deliveries, **sent) == value(before, deliveries, **sent) + 3
    tasks = "levy_celery_tasks_total"
    deliver = {"task": "levy.notifications.tasks.deliver_intent", "outcome": "succeeded"}
    send = {"task": "levy.notifications.tasks.send_deliveries", "outcome": "succeeded"}
    assert value(after, tasks, **deliver) == value(before, tasks, **deliver) + 1
    assert value(after, tasks, **send) == value(before, tasks, **send)
    settings.LEVY_DELIVERY_INLINE_MAX = 2  # one more recipient than this: a sending task
    estate.wide_bill()
    again = scrape()
    assert value(again, deliveries, **sent) == value(after, deliveries, **sent) + 3
    assert value(again, tasks, **send) == value(after, tasks, **send) + 1


def test_failed_sends_are_counted(estate: Estate, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    before = scrape()
    estate.wide_bill()
    after = scrape()
    failed = {"channel": "email", "outcome": "failed"}
    deliveries = "levy_notification_deliveries_total"
    assert value(after, deliveries, **failed) == value(before, deliveries, **failed) + 3
    retrying = {"channel": "email", "state": "retrying"}
    waiting = "levy_notification_deliveries_waiting"
    assert value(after, waiting, **retrying) == value(before, waiting, **retrying) + 3


# --- the broker -------------------------------------------------------------------------------


def test_queue_lengths_are_those_in_the_broker(db: None, broker: redis.Redis) -> None:
    options = celery_app.conf.broker_transport_options or {}
    broker.rpush("notifications", *[f"task-{n}" for n in range(3)])
    broker.rpush(queue_keys("notifications", options)[-1], "a-high-priority-message")  # kombu's priority list
    broker.rpush("levy", "sweep")
    samples = scrape()
    assert value(samples, "levy_broker_up") == 1
    expected = {
        queue: sum(int(broker.llen(key)) for key in queue_keys(queue, options))
        for queue in ("notifications_high", "notifications", "levy")
    }
    assert expected == {"notifications_high": 0, "notifications": 4, "levy": 1}
    assert {queue: value(samples, "levy_celery_queue_length", queue=queue) for queue in expected} == expected

    broker.lpop("notifications")
    assert value(scrape(), "levy_celery_queue_length", queue="notifications") == 3


def test_a_broker_that_does_not_answer_is_reported_and_the_scrape_still_succeeds(db: None) -> None:
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    try:
        started = time.monotonic()
        samples = scrape()
        took = time.monotonic() - started
    finally:
        celery_app.conf.broker_url = previous
    assert value(samples, "levy_broker_up") == 0
    assert not any(name == "levy_celery_queue_length" for name, _ in samples)
    assert value(samples, "levy_database_up") == 1
    assert took < 3


# --- memory -----------------------------------------------------------------------------------


def test_the_resident_memory_of_the_process_is_reported(db: None) -> None:
    rss = value(scrape(), "levy_process_resident_memory_bytes", process="web")
    actual = psutil.Process().memory_info().rss
    assert rss > 0
    assert 0.5 * actual < rss < 1.5 * actual


# --- the token --------------------------------------------------------------------------------


def test_the_token_guards_metrics_when_set(db: None, settings: Any) -> None:
    settings.LEVY_METRICS_TOKEN = "a-long-metrics-token"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a-long-metrics-token"}):
        response = Client().get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"levy_" not in response.content
    good = Client().get("/metrics", headers={"Authorization": "Bearer a-long-metrics-token"})
    assert good.status_code == 200
    assert b"levy_http_requests_total" in good.content


def test_without_a_token_metrics_are_open(db: None, settings: Any) -> None:
    settings.LEVY_METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200


def test_other_methods_are_refused_with_a_code(db: None) -> None:
    response = Client().post("/metrics")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


# --- alerts and dashboard name only real metrics ------------------------------------------------

METRIC = re.compile(r"\blevy_[a-z0-9_]+")


def alert_rules() -> list[dict[str, Any]]:
    config = yaml.safe_load(ALERTS.read_text())
    return [rule for group in config["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(dashboard)
    return found


def test_alerts_and_dashboard_use_only_metrics_that_exist(estate: Estate, broker: redis.Redis) -> None:
    # make every metric have a sample: a request, a payment, a fan-out with its emails
    resident = estate.residents[0]
    bill = estate.wide_bill()
    with committed():
        bill_acknowledge(access=access(resident), bill=bill)
    estate.fund(resident, "20000.00")
    with committed():
        bill_pay(access=access(resident), bill=bill, idempotency_key=new_key())
    Client().get("/api/v1/me/")
    exposed = names(scrape())

    alerts = [rule["expr"] for rule in alert_rules()]
    panels = dashboard_expressions()
    assert len(alerts) >= 8
    assert len(panels) >= 10
    used = {name for expr in alerts + panels for name in METRIC.findall(expr)}
    assert used, "no levy_* metric found in the alerts or the dashboard"
    assert used - exposed == set()


def test_every_alert_has_a_unit_test_and_every_job_is_scraped() -> None:
    rules = alert_rules()
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tested = {
        alert["alertname"]
        for case in tests["tests"]
        for alert in case.get("alert_rule_test", [])
        if alert.get("exp_alerts")  # a case that expects the alert to fire
    }
    assert {rule["alert"] for rule in rules} - tested == set()
    jobs = {scrape["job_name"] for scrape in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    named = {job for rule in rules for job in re.findall(r'job(?:=~?)"([^"]+)"', rule["expr"])}
    assert named
    for pattern in named:
        assert any(re.fullmatch(pattern, job) for job in jobs), pattern
