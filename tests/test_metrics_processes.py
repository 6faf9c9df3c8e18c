"""Metrics across processes: gunicorn with two workers in multiprocess mode adds up
its workers' counters and forgets a dead worker's memory gauge; a Celery worker
serves its pool processes' counters on its own port and never writes into the web
server's directory."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from levy.billing.services import bill_create_cluster_wide
from levy.notifications.models import NotificationIntent
from tests.conftest import access, bill_input, free_port, make_estate
from tests.notifications.test_worker import (  # noqa: F401 - fixtures
    RedisServer,
    Worker,
    database_url,
    delivered,
    emails_settled,
    real_broker,
    redis_server,
    start_worker,
    tail,
    wait_for,
)
from tests.test_metrics import Samples, parse, value

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PORTS = range(8200, 8300)
TOKEN = "metrics-token-for-the-test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One plain HTTP GET; redirects are not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics", AUTH)
    assert status == 200, body
    return parse(body.decode())


def memory_pids(samples: Samples, process: str) -> dict[str, float]:
    """pid -> resident memory of each process of that kind."""
    found = {}
    for (name, labels), number in samples.items():
        label = dict(labels)
        if name == "levy_process_resident_memory_bytes" and label.get("process") == process:
            found[label["pid"]] = number
    return found


def stale_counter(directory: Path) -> None:
    """A counter file like one a previous gunicorn would leave: 1000 /healthz answers."""
    code = (
        "from prometheus_client import Counter;"
        "Counter('levy_http_requests', 'x', ['method', 'route', 'status']).labels('GET', 'healthz', '200').inc(1000)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)  # noqa: S603
    assert list(directory.glob("counter_*.db"))


# --- gunicorn, two workers --------------------------------------------------------------------


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def workers(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.process.pid).children()}


@pytest.fixture
def gunicorn(tmp_path: Path, redis_server: RedisServer) -> Iterator[Gunicorn]:  # noqa: F811
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale_counter(metrics_dir)
    port = free_port(PORTS)
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "LEVY_PROVIDER_SECRETS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "CELERY_BROKER_URL": redis_server.url,
        "LEVY_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LEVY_METRICS_TOKEN": TOKEN,
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the deployed command line
            [str(VENV_BIN / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(process, port, log)
    try:

        def answers() -> bool:
            assert process.poll() is None, f"gunicorn exited:\n{tail(log)}"
            with contextlib.suppress(OSError):
                return get(port, "/healthz")[0] == 200
            return False

        wait_for(answers, what="gunicorn", log=lambda: tail(log), interval=0.2)
        wait_for(lambda: len(server.workers()) == 2, what="two gunicorn workers", log=lambda: tail(log))
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_gunicorn_adds_up_its_workers_counters(gunicorn: Gunicorn) -> None:
    healthz = {"method": "GET", "route": "healthz", "status": "200"}
    # the readiness probe's answers so far; the stale file's 1000 are gone
    before = value(scrape(gunicorn.port), "levy_http_requests_total", **healthz)
    assert 1 <= before < 10
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        # until both workers have answered some (each records its memory as it answers)
        for _ in range(20):
            statuses = list(pool.map(lambda _: get(gunicorn.port, "/healthz")[0], range(40)))
            assert statuses == [200] * 40
            sent += 40
            samples = scrape(gunicorn.port)
            if set(memory_pids(samples, "web")) >= {str(pid) for pid in gunicorn.workers()}:
                break
    workers = {str(pid) for pid in gunicorn.workers()}
    pids = memory_pids(samples, "web")
    assert set(pids) == workers, (pids, workers)  # both workers answered
    assert all(rss > 10_000_000 for rss in pids.values())
    # the total of both workers
    assert value(samples, "levy_http_requests_total", **healthz) == before + sent
    assert value(samples, "levy_http_request_duration_seconds_count", route="healthz") == before + sent
    # the gauges read at scrape time are there once, not once per worker
    assert value(samples, "levy_broker_up") == 1
    assert value(samples, "levy_database_up") == 1

    # production mode: /metrics answers plain HTTP (no redirect), and only with the token
    status, body = get(gunicorn.port, "/metrics")
    assert status == 401, body
    assert get(gunicorn.port, "/api/v1/me/")[0] == 301  # the rest is redirected to HTTPS

    # a worker dies: its memory gauge goes, its counts stay
    victim = next(iter(gunicorn.workers()))
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(gunicorn.workers()) == 2 and victim not in gunicorn.workers(),
        what="gunicorn to replace the killed worker",
        log=lambda: tail(gunicorn.log),
    )
    # The arbiter forgets the dead worker's gauge as it reaps it (child_exit); a scrape
    # can still land between the replacement showing up and that, so wait for it.
    wait_for(
        lambda: str(victim) not in memory_pids(scrape(gunicorn.port), "web"),
        what="the killed worker's memory gauge to go",
        log=lambda: tail(gunicorn.log),
    )
    after = scrape(gunicorn.port)
    assert value(after, "levy_http_requests_total", **healthz) == before + sent


# --- a Celery worker's own port ---------------------------------------------------------------


def test_a_worker_serves_its_pool_processes_counters_on_its_port(
    real_broker: RedisServer,  # noqa: F811
    start_worker: Callable[..., Worker],  # noqa: F811
    tmp_path: Path,
) -> None:
    web_dir = tmp_path / "web-metrics"  # what a shared environment would hand the worker too
    web_dir.mkdir()
    port = free_port(PORTS)
    worker = start_worker(
        LEVY_WORKER_METRICS_PORT=str(port),
        LEVY_WORKER_METRICS_ADDR="127.0.0.1",
        LEVY_METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(web_dir),
        TMPDIR=str(tmp_path),
        LEVY_DELIVERY_INLINE_MAX="0",  # the emails in their own task, so both tasks are counted
    )
    wait_for(lambda: "worker metrics on http://127.0.0.1" in worker.log(), what="the metrics port", log=worker.log)
    assert get(port, "/metrics")[0] == 401
    assert get(port, "/elsewhere", AUTH)[0] == 404
    assert get(port, "/metrics", AUTH)[0] == 200
    directories = list(tmp_path.glob("levy-worker-metrics-*"))
    assert len(directories) == 1

    estate = make_estate(residents=3)
    bill = bill_create_cluster_wide(access=access(estate.admin), data=bill_input())
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}")
    wait_for(lambda: delivered(intent), what="the fan-out", log=worker.log)
    wait_for(lambda: emails_settled(intent), what="the emails", log=worker.log)

    deliver = {"task": "levy.notifications.tasks.deliver_intent", "outcome": "succeeded"}
    send = {"task": "levy.notifications.tasks.send_deliveries", "outcome": "succeeded"}
    wait_for(
        lambda: value(scrape(port), "levy_celery_tasks_total", **send) == 1,
        what="the sending task to be counted",
        log=worker.log,
    )
    samples = scrape(port)
    assert value(samples, "levy_notification_intents_fanned_out_total", event="PAYMENT_DUE") == 1
    assert value(samples, "levy_notification_inbox_rows_written_total", event="PAYMENT_DUE") == 3
    assert value(samples, "levy_notification_deliveries_total", channel="email", outcome="sent") == 3
    assert value(samples, "levy_celery_tasks_total", **deliver) == 1

    main = worker.process.pid
    pool = {child.pid for child in psutil.Process(main).children()}
    assert len(pool) == 1
    pids = memory_pids(samples, "worker")
    assert set(pids) == {str(main), *(str(pid) for pid in pool)}
    assert all(rss > 10_000_000 for rss in pids.values())
    # the web server's gauges are not the worker's to report
    assert not any(name.startswith(("levy_broker_up", "levy_notification_backlog")) for name, _ in samples)
    # nothing written where the web server keeps its files
    assert list(web_dir.iterdir()) == []

    worker.stop()
    assert not directories[0].exists()  # removed at warm shutdown
