"""Rate limits (targets.md, row "rate limits"): bursts past the limit get 429 with
``Retry-After``, the counters live in Redis so every server process shares them, and an
unreachable Redis never takes billing down.

These tests use a Redis database of their own (db 15 on the host of ``REDIS_URL``),
flushed around each test: the rest of the suite — and other test runs on this machine —
clear db 0 between tests, which would reset a counter in the middle of a burst.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from levy.api.models import IdempotencyRecord
from levy.billing.services import bill_acknowledge
from levy.wallets.models import Transaction, Wallet
from tests.api import clock
from tests.api.conftest import api_as, base
from tests.conftest import Estate, access, make_estate, new_key
from tests.factories import TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
RATE_LIMIT_DB = 15


def _redis_url(db: int) -> str:
    parsed = urlparse(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    host = parsed.hostname or "127.0.0.1"
    assert host in ("127.0.0.1", "localhost", "::1"), "these tests only talk to a loopback Redis"
    return f"redis://{host}:{parsed.port or 6379}/{db}"


REDIS_URL = _redis_url(RATE_LIMIT_DB)
REDIS_CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
}
UNREACHABLE_CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
}


def limits(**overrides: str) -> dict[str, str]:
    return {**settings.LEVY_RATE_LIMITS, **overrides}


def flush_rate_limit_db() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def start_of_a_fresh_window(period: int, needed: float, *, other_processes: bool = False) -> None:
    """Fixed windows: make sure the burst does not straddle a window boundary. Limiters
    in this process: their clock moves to the next window (``tests/api/clock.py``).
    Limiters in servers this test started (``other_processes``) keep the real clock:
    the test sleeps until the next window instead."""
    remaining = period - (time.time() % period)
    if remaining >= needed:
        return
    if other_processes:
        time.sleep(remaining + 0.1)
    else:
        clock.move_forward(remaining + 0.1)


def assert_rate_limited(response: Any, period: int = 60) -> int:
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "rate_limited"
    retry_after = response["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= period
    return int(retry_after)


@pytest.fixture
def shared_redis() -> Iterator[None]:
    flush_rate_limit_db()
    with override_settings(CACHES=REDIS_CACHES):
        yield
    flush_rate_limit_db()


# --- bursts in one process ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_payment_burst_past_the_limit_gets_429(estate: Estate, shared_redis: None) -> None:
    me = estate.residents[0]
    estate.fund(me, "1000.00")
    bill = estate.wide_bill(amount=Decimal("100.00"))
    bill_acknowledge(access=access(me), bill=bill)
    api = api_as(me)
    path = f"{base(estate)}/bills/{bill.pk}/pay/"
    with override_settings(LEVY_RATE_LIMITS=limits(pay="3/min")):
        start_of_a_fresh_window(60, 10)
        answers = [api.post(path, key=new_key("burst")).status_code for _ in range(3)]
        assert answers == [201, 409, 409]  # every request counts, refused or not
        blocked_key = new_key("blocked")
        blocked = api.post(path, key=blocked_key)
        retry_after = assert_rate_limited(blocked)
        assert blocked.json()["error"]["details"]["retry_after"] == retry_after
        assert_rate_limited(api.post(path, key=new_key("blocked")))
        # The refused request did nothing at all.
        assert not IdempotencyRecord.objects.filter(key=blocked_key).exists()
        assert Wallet.objects.get(cluster=estate.cluster, user=me.user).balance == Decimal("900.00")
        assert Transaction.objects.filter(bill=bill).count() == 1
        # Other scopes and other people are not affected.
        assert api.get(f"{base(estate)}/wallet/").status_code == 200
        neighbour = estate.residents[1]
        estate.fund(neighbour, "100.00")
        bill_acknowledge(access=access(neighbour), bill=bill)
        assert api_as(neighbour).post(path, key=new_key()).status_code == 201


@pytest.mark.django_db
def test_the_general_per_user_limit_covers_every_endpoint(estate: Estate, shared_redis: None) -> None:
    me = estate.residents[0]
    api = api_as(me)
    with override_settings(LEVY_RATE_LIMITS=limits(user="5/min")):
        start_of_a_fresh_window(60, 10)
        paths = ["/api/v1/me/", f"{base(estate)}/wallet/", "/api/v1/notifications/", f"{base(estate)}/bills/"]
        answers = [api.get(paths[i % len(paths)]).status_code for i in range(5)]
        assert answers == [200] * 5
        for path in paths:
            assert_rate_limited(api.get(path))
        assert api_as(estate.residents[1]).get("/api/v1/me/").status_code == 200


@pytest.mark.django_db
def test_probing_another_estate_counts_against_the_caller(
    estate: Estate, other_estate: Estate, shared_redis: None
) -> None:
    api = api_as(estate.residents[0])
    with override_settings(LEVY_RATE_LIMITS=limits(user="3/min")):
        start_of_a_fresh_window(60, 10)
        answers = [api.get(f"{base(other_estate)}/bills/").status_code for _ in range(3)]
        assert answers == [404] * 3
        assert_rate_limited(api.get(f"{base(other_estate)}/bills/"))
        assert_rate_limited(api.get(f"{base(estate)}/bills/"))


@pytest.mark.django_db
def test_the_estate_limit_is_shared_by_its_members(estate: Estate, shared_redis: None) -> None:
    with override_settings(LEVY_RATE_LIMITS=limits(estate="4/min")):
        start_of_a_fresh_window(60, 10)
        callers = [api_as(m) for m in (*estate.residents, estate.admin)]
        answers = [callers[i].get(f"{base(estate)}/wallet/").status_code for i in range(4)]
        assert answers == [200] * 4
        assert_rate_limited(api_as(estate.treasurer).get(f"{base(estate)}/wallet/"))
        # Outside the estate, the same people are not limited.
        assert callers[0].get("/api/v1/me/").status_code == 200


def test_retry_after_is_the_time_left_in_the_window() -> None:
    from levy.common import ratelimit

    with override_settings(LEVY_RATE_LIMITS={"probe": "1/min"}, CACHES=REDIS_CACHES):
        flush_rate_limit_db()
        try:
            now = 1_000_000 * 60 + 42.5  # 42.5 s into a window
            assert ratelimit.hit("probe", "subject", now=now) is None
            assert ratelimit.hit("probe", "subject", now=now) == pytest.approx(17.5)
            assert ratelimit.hit("probe", "subject", now=now + 17.6) is None  # next window
        finally:
            flush_rate_limit_db()


def test_several_limits_in_one_round_trip_count_each_and_report_the_longest_wait() -> None:
    from levy.common import ratelimit

    limits = {"minute": "2/min", "hour": "1/hour"}
    with override_settings(LEVY_RATE_LIMITS=limits, CACHES=REDIS_CACHES):
        flush_rate_limit_db()
        try:
            now = 1_000 * 3600 + 30.0  # 30 s into an hour, and into a minute
            both = [("minute", "s"), ("hour", "s"), ("unlimited", "s")]
            assert ratelimit.hit_all(both, now=now) is None
            # The hour's limit is spent, the minute's is not: the wait is the hour's.
            assert ratelimit.hit_all(both, now=now) == pytest.approx(3570.0)
            # Both were counted: the minute's third request is refused on its own.
            assert ratelimit.hit("minute", "s", now=now) == pytest.approx(30.0)
        finally:
            flush_rate_limit_db()


# --- Redis unreachable -------------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_are_served_when_redis_is_unreachable(estate: Estate, caplog: pytest.LogCaptureFixture) -> None:
    me = estate.residents[0]
    estate.fund(me, "100.00")
    bill = estate.wide_bill(amount=Decimal("100.00"))
    bill_acknowledge(access=access(me), bill=bill)
    api = api_as(me)
    caplog.set_level(logging.WARNING, logger="levy.ratelimit")
    with override_settings(CACHES=UNREACHABLE_CACHES, LEVY_RATE_LIMITS=limits(user="1/min", pay="1/min")):
        started = time.monotonic()
        assert api.get(f"{base(estate)}/wallet/").status_code == 200
        assert api.get(f"{base(estate)}/bills/").status_code == 200  # over the (unenforceable) limit
        paid = api.post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
        assert paid.status_code == 201, paid.content
        assert time.monotonic() - started < 10
        ready = api_as(None).client.get("/readyz")
        # Still ready (the database answers), reported as degraded.
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["cache"].startswith("error")
        assert api_as(None).client.get("/healthz").status_code == 200
    warnings = [r for r in caplog.records if r.name == "levy.ratelimit" and r.levelno == logging.WARNING]
    assert warnings, "an unreachable rate limiter must be logged"
    assert "rate limiter unavailable" in warnings[0].getMessage()
    assert Wallet.objects.get(cluster=estate.cluster, user=me.user).balance == Decimal("0.00")


# --- two server processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, dict, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers_out, json.loads(raw) if raw else None
    finally:
        conn.close()


def log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


def wait_until_up(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server on port {port} exited with {process.returncode}:\n{log_tail(log)}")
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server on port {port} did not answer /healthz within {timeout}s:\n{log_tail(log)}")


def database_url() -> str:
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{quote(db['NAME'], safe='')}"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_limit_is_shared_by_two_server_processes(tmp_path: Path) -> None:
    assert connection.vendor == "postgresql"
    estate = make_estate(residents=1)  # committed: the servers see it
    me = estate.residents[0]
    estate.fund(me, "10.00")
    flush_rate_limit_db()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": REDIS_URL,
        "LEVY_RATE_USER": "5/min",
        "LEVY_RATE_SIGN_IN": "10/min",
        "LEVY_RATE_ESTATE": "1000/min",
        "DB_CONN_MAX_AGE": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"server-{port}.log" for port in ports]
    try:
        for port, log in zip(ports, logs, strict=True):
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py, loopback only
                        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for port, process, log in zip(ports, processes, logs, strict=True):
            wait_until_up(port, process, log)

        status, _, tokens = request(
            ports[0], "POST", "/api/v1/auth/token/", {"email": me.user.email, "password": TEST_PASSWORD}
        )
        assert status == 200, (tokens, log_tail(logs[0]))
        token = tokens["access"]
        path = f"/api/v1/clusters/{estate.cluster.pk}/wallet/"

        start_of_a_fresh_window(60, 15, other_processes=True)
        answers: list[tuple[int, int, dict, Any]] = []
        for i in range(8):
            port = ports[i % 2]
            status, headers, body = request(port, "GET", path, token=token)
            answers.append((port, status, headers, body))
        statuses = [a[1] for a in answers]
        # Each process saw at most four requests: only a shared counter stops the sixth.
        assert statuses == [200] * 5 + [429] * 3, (statuses, [a[3] for a in answers])
        assert answers[0][3] == {"balance": "10.00", "currency": "NGN"}
        assert {a[0] for a in answers if a[1] == 429} == set(ports)  # both processes refuse
        for _, _, headers, body in answers[5:]:
            assert body["error"]["code"] == "rate_limited"
            assert headers["retry-after"].isdigit()
            assert 1 <= int(headers["retry-after"]) <= 60
    finally:
        for process in processes:
            stop(process)
        flush_rate_limit_db()
