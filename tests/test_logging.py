"""Logs: the request id (accepted or generated, returned, on every line of the request
and, through the task message, on the worker's lines for the tasks the request
queued), and the JSON and text formats."""

from __future__ import annotations

import base64
import datetime
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from levy.billing.selectors import estate_today
from levy.common import logs
from levy.common.logs import JsonFormatter, RequestContextFilter, TextFormatter
from levy.common.request_id import HEADER, sane_request_id
from levy.notifications.models import NotificationIntent
from levy.notifications.tasks import sweep_undelivered
from tests.conftest import make_estate
from tests.notifications.test_worker import (  # noqa: F401 - fixtures
    RedisServer,
    delivered,
    emails_settled,
    real_broker,
    redis_server,
    start_worker,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
DELIVER = "levy.notifications.tasks.deliver_intent"
SEND = "levy.notifications.tasks.send_deliveries"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the root logger writes through Levy's JSON formatter and context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --- the request id ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("A.b_C-9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("has space", False),
        ("semi;colon", False),
        ("ünïcode", False),
        ("line\nbreak", False),
    ],
)
def test_only_sane_request_ids_are_accepted(given: str, kept: bool) -> None:
    assert sane_request_id(given) == (given if kept else None)


def test_a_sane_incoming_request_id_is_returned(db: None) -> None:
    response = Client().get("/healthz", headers={HEADER: "edge-7f3a.1"})
    assert response[HEADER] == "edge-7f3a.1"


@pytest.mark.parametrize("incoming", [None, "", "x" * 65, "two words", "<script>"])
def test_otherwise_a_new_id_is_generated(db: None, incoming: str | None) -> None:
    headers = {HEADER: incoming} if incoming is not None else {}
    first = Client().get("/healthz", headers=headers)[HEADER]
    second = Client().get("/healthz", headers=headers)[HEADER]
    assert first != second
    for generated in (first, second):
        assert len(generated) == 32
        assert int(generated, 16) >= 0
        assert sane_request_id(generated) == generated


def test_every_line_of_a_request_carries_its_id_and_later_lines_do_not(db: None, log_lines: io.StringIO) -> None:
    response = Client().get(f"/no-such-page-{uuid.uuid4().hex}", headers={HEADER: "trace-me.1"})
    assert response.status_code == 404
    api = Client().get("/api/v1/me/", headers={HEADER: "trace-me.2"})
    assert api.status_code == 401
    logging.getLogger("levy.test").warning("between requests")

    lines = records(log_lines)
    not_found = [line for line in lines if line["message"].startswith("Not Found:")]
    unauthorised = [line for line in lines if line["message"].startswith("Unauthorized:")]
    assert [line["request_id"] for line in not_found] == ["trace-me.1"]  # logged after the middleware returned
    assert [line["request_id"] for line in unauthorised] == ["trace-me.2"]
    between = [line for line in lines if line["message"] == "between requests"]
    assert [line["request_id"] for line in between] == [None]


def test_each_request_gets_one_line_when_the_request_log_is_on(db: None, log_lines: io.StringIO, settings: Any) -> None:
    settings.LEVY_REQUEST_LOG = True
    cluster_id = uuid.uuid4()
    Client().get(f"/api/v1/clusters/{cluster_id}/bills/", headers={HEADER: "one-line"})
    lines = [line for line in records(log_lines) if line["logger"] == "levy.request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "one-line"
    assert line["message"].startswith(f"GET /api/v1/clusters/{cluster_id}/bills/ 401 ")
    assert line["route"] == "api/v1/clusters/<str:cluster_id>/bills/"
    assert (line["method"], line["status"]) == ("GET", 401)
    assert line["duration_ms"] >= 0

    settings.LEVY_REQUEST_LOG = False
    Client().get("/healthz")
    assert len([line for line in records(log_lines) if line["logger"] == "levy.request"]) == 1


def test_a_task_run_in_process_logs_under_the_request_and_gives_it_back(db: None, log_lines: io.StringIO) -> None:
    token = logs.set_request_id("req-in-process")
    try:
        result = sweep_undelivered.apply()
        assert result.successful()
        assert logs.current_request_id() == "req-in-process"
        assert logs.current_task() is None
        logging.getLogger("levy.test").warning("after the task")
    finally:
        logs.reset_request_id(token)

    lines = records(log_lines)
    task_lines = [line for line in lines if line.get("task_name") == "levy.notifications.tasks.sweep_undelivered"]
    assert task_lines, lines
    assert {(line["request_id"], line["task_id"]) for line in task_lines} == {("req-in-process", result.id)}
    after = next(line for line in lines if line["message"] == "after the task")
    assert after["request_id"] == "req-in-process"
    assert "task_id" not in after


# --- the formats ------------------------------------------------------------------------------


def make_record(message: str = "paid %s", *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.getLogger("levy.wallets").makeRecord(
        "levy.wallets", logging.WARNING, __file__, 10, message, args or ("bill-1",), None, extra=extra or None
    )
    RequestContextFilter().filter(record)
    return record


def test_json_lines_carry_time_level_logger_message_request_id_and_extras() -> None:
    token = logs.set_request_id("rid-42")
    try:
        record = make_record(amount="5000.00", member_id=uuid.UUID(int=7))
    finally:
        logs.reset_request_id(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "levy.wallets"
    assert payload["message"] == "paid bill-1"
    assert payload["request_id"] == "rid-42"
    assert payload["pid"] == os.getpid()
    assert payload["amount"] == "5000.00"
    assert payload["member_id"] == str(uuid.UUID(int=7))
    assert payload["time"].endswith("Z")
    assert "task_id" not in payload


def test_json_lines_carry_the_traceback_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("levy").makeRecord(
            "levy", logging.ERROR, __file__, 1, "failed", (), sys.exc_info(), extra=None
        )
    RequestContextFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert "ValueError: boom" in payload["exception"]
    assert "Traceback" in payload["exception"]


def test_text_lines_show_the_request_and_the_task() -> None:
    token = logs.set_request_id("rid-7")
    task = logs.set_task("levy.notifications.tasks.deliver_intent", "task-9")
    try:
        record = make_record()
    finally:
        logs.reset_task(task)
        logs.reset_request_id(token)
    line = TextFormatter().format(record)
    assert line.endswith(
        " WARNING levy.wallets [rid=rid-7 task=levy.notifications.tasks.deliver_intent[task-9]] paid bill-1"
    )
    assert TextFormatter().format(make_record()).endswith(" WARNING levy.wallets [rid=-] paid bill-1")


def settings_value(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", f"from django.conf import settings; print(settings.{name})"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_log_format_defaults_to_text_in_development_and_json_in_production() -> None:
    assert settings_value("LOG_FORMAT").stdout.strip() == "text"
    assert settings_value("LOG_FORMAT", LOG_FORMAT="json").stdout.strip() == "json"
    production = settings_value(
        "LOG_FORMAT",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=uuid.uuid4().hex + uuid.uuid4().hex,
        LEVY_PROVIDER_SECRETS_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        DATABASE_URL="postgres://root@127.0.0.1:5432/postgres",
        REDIS_URL="redis://127.0.0.1:6379/3",
        DJANGO_ALLOWED_HOSTS="levy.example",
        LEVY_METRICS_PRIVATE="1",
    )
    assert production.stdout.strip() == "json", production.stderr


def test_an_unknown_log_format_is_refused() -> None:
    result = settings_value("LOG_FORMAT", LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be json or text, not 'xml'" in result.stderr


# --- from the web request into the worker -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_worker_logs_a_requests_tasks_under_its_request_id(
    real_broker: RedisServer,  # noqa: F811 - the fixture imported above
    start_worker,  # noqa: F811
) -> None:
    estate = make_estate(residents=2)
    # The emails in their own task, so the id is seen crossing from task to task too.
    worker = start_worker(LOG_FORMAT="json", LEVY_DELIVERY_INLINE_MAX="0")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(estate.admin.user).access_token}")
    request_id = f"bill-day.{uuid.uuid4().hex[:12]}"
    due = (estate_today() + datetime.timedelta(days=14)).isoformat()

    response = client.post(
        f"/api/v1/clusters/{estate.cluster.pk}/management/bills/",
        {"title": "Security levy", "category": "security", "amount": "5000.00", "due_date": due},
        format="json",
        headers={HEADER: request_id},
    )
    assert response.status_code == 201, response.json()
    assert response[HEADER] == request_id
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{response.json()['id']}")
    wait_for(lambda: delivered(intent), what="the fan-out", log=worker.log)
    wait_for(lambda: emails_settled(intent), what="the emails", log=worker.log)

    def task_lines() -> list[dict[str, Any]]:
        lines = []
        for raw in worker.log_path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # the startup banner is not a log line
            if isinstance(line, dict) and line.get("task_id"):
                lines.append(line)
        return lines

    def both_tasks_logged() -> list[dict[str, Any]]:
        lines = [line for line in task_lines() if "succeeded" in line["message"]]
        return lines if {line["task_name"] for line in lines} >= {DELIVER, SEND} else []

    wait_for(both_tasks_logged, what="both tasks' lines in the worker log", log=worker.log, interval=0.2)
    lines = [line for line in task_lines() if line["task_name"] in {DELIVER, SEND}]
    # the fan-out task was queued by the request; it queued the sending task; both carry the id
    assert {line["task_name"] for line in lines} == {DELIVER, SEND}
    assert {line["request_id"] for line in lines} == {request_id}
    assert all(line["pid"] != worker.process.pid for line in lines)  # logged in a pool process
    assert {line["level"] for line in lines} == {"INFO"}
