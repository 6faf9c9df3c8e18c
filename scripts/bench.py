#!/usr/bin/env python3
"""Levy's benchmark: every number of targets.md, measured over real HTTP.

One run measures one data set (S or L) end to end:

1. recreates the work database from the data set's template (building the template
   first if it is missing), migrates it and runs ANALYZE;
2. starts gunicorn as deployed (``DJANGO_ENV=production``, ``config/gunicorn.conf.py``)
   with ``LEVY_SERVER_TIMING=1`` and one Celery worker, on loopback;
3. measures each operation of the latency table (warm-up, then the measured requests,
   from several client threads), the payment throughput with 16 clients (then checks
   the money in PostgreSQL), the notification fan-out of a new estate-wide bill and the
   worker's peak memory, the memory growth of one web worker over many requests, and
   the one-row-per-bill design against a one-row-per-resident baseline;
4. prints the tables and writes ``results/bench-<size>.json``.

Run it through ``scripts/bench.sh`` (``make bench``, ``make bench-quick``), which starts
PostgreSQL and Redis first. docs/performance.md explains every figure.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import http.client
import itertools
import json
import os
import platform
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.bench_prep import (  # noqa: E402 - after the project root is on the path
    EXPECTED_BUILD_S,
    BuildProgress,
    PrepError,
    claim_redis,
    compare_files,
    disk_plan,
    format_duration,
    run_with_progress,
)

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BIN = Path(PYTHON).parent

ADMIN_EMAIL = "admin@estate0.bench.levy.test"
BENCH_PASSWORD = "levy-bench-password"  # noqa: S105 - the data generator's fixture password
# Every rate limit stays on (each request still counts in Redis) but is raised far
# above what the benchmark sends: all its residents and the admin hit one estate.
RATE_SCOPES = (
    "USER",
    "ESTATE",
    "SIGN_IN_FAILURES",
    "TOKEN_REFRESH",
    "TOKEN_REFRESH_FAILURES",
    "ACKNOWLEDGE",
    "DISPUTE",
    "PAY",
    "CREDIT",
    "BILL_CREATE",
)
RAISED_RATE = "100000000/min"
SCRATCH_SCHEMA = "levy_bench_scratch"


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    floor_ms: float
    target_ms: dict[str, float]


# targets.md, "Latency", in its order.
OPERATIONS = [
    Operation("create_bill", "create an estate-wide bill", 100, {"S": 25, "L": 25}),
    Operation("dashboard", "admin dashboard", 2000, {"S": 100, "L": 150}),
    Operation("bill_list", "admin bill list, 50 bills with stats", 2000, {"S": 100, "L": 150}),
    Operation("member_list", "admin member list, 50 with bill summaries", 2000, {"S": 100, "L": 150}),
    Operation("bill_members", "one bill's per-member list, 50 rows", 2000, {"S": 100, "L": 150}),
    Operation("resident_bills", "resident bill list, 50 bills", 500, {"S": 30, "L": 30}),
    Operation("acknowledge", "acknowledge", 500, {"S": 30, "L": 30}),
    Operation("pay", "pay from wallet", 500, {"S": 50, "L": 50}),
]
# targets.md, "The pages": manager pages 150 ms p95 at L, resident pages 50 ms, the hover
# card 30 ms (loaded on demand); the same at S (no tighter target is set for S). The floor
# column keeps the plan's floors of the API reads they show (2 s manager, 500 ms resident).
MANAGER_PAGE_MS, RESIDENT_PAGE_MS, HOVER_CARD_MS = 150, 50, 30
PAGE_OPERATIONS = [
    Operation("page_dashboard", "dashboard page (chart, figures)", 2000, {"S": 150, "L": 150}),
    Operation("page_bills", "bills page, 25 bills with counts", 2000, {"S": 150, "L": 150}),
    Operation("page_bill", "one estate-wide bill's page", 2000, {"S": 150, "L": 150}),
    Operation("page_bill_new", "new bill form", 2000, {"S": 150, "L": 150}),
    Operation("page_members", "members page, 25 with bill summaries", 2000, {"S": 150, "L": 150}),
    Operation("hover_card", "a member's hover card (htmx fragment)", 2000, {"S": 30, "L": 30}),
    Operation("page_member", "one member's page", 2000, {"S": 150, "L": 150}),
    Operation("page_disputes", "disputes page", 2000, {"S": 150, "L": 150}),
    Operation("page_transactions", "transactions page", 2000, {"S": 150, "L": 150}),
    Operation("page_schedules", "recurring bills page", 2000, {"S": 150, "L": 150}),
    Operation("page_my_bills", "resident: my bills", 500, {"S": 50, "L": 50}),
    Operation("page_my_bill", "resident: one bill", 500, {"S": 50, "L": 50}),
    Operation("page_wallet", "resident: wallet", 500, {"S": 50, "L": 50}),
    Operation("page_notifications", "resident: notifications", 500, {"S": 50, "L": 50}),
]
# No target is set for a receipt; its render time is reported (issue: collections).
DOCUMENT_OPERATIONS = [
    Operation("receipt", "payment receipt (PDF), the payer's", 2000, {"S": 0, "L": 0}),
]
BILL_CREATION_MAX_L_OVER_S = 1.3
# Notifications in the inbox of each resident whose pages are measured: more than the
# inbox's page (25), so that the page drawn is full and links to a second.
INBOX_SIZE = 30
PAYMENTS_PER_SECOND_TARGET = 300
FANOUT_TARGET_SECONDS = 10.0
WORKER_PEAK_RSS_TARGET_MB = 200.0
WEB_RSS_GROWTH_TARGET_MB = 10.0
MB = 1024 * 1024
# CPU busy (all cores) while the run is idle, above which other work is said to be running.
OTHER_WORK_BUSY = 0.25


# --- processes ---------------------------------------------------------------------------------

RUNNING: list[Service] = []
# The results of the run in progress (written as <name>-incomplete.json if it stops early).
PARTIAL: dict[str, Any] = {}


class Service:
    """A server process in its own process group, logging to a file; stopped at the end
    of the run whatever happens (errors, Ctrl-C)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - our own executables
            argv, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the main process (gunicorn and Celery then stop their own
        workers gracefully); SIGKILL to the group if it is not done in time."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        self._kill_group()  # anything of ours its main process left behind
        self._log_file.close()
        if self in RUNNING:
            RUNNING.remove(self)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def stop_all() -> None:
    for service in reversed(list(RUNNING)):
        service.stop()


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(sum, largest) RSS over a process and its descendants."""
    values = []
    for proc in [process, *process.children(recursive=True)]:
        try:
            values.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return sum(values), max(values, default=0)


class RssSampler(threading.Thread):
    """Samples a process tree's RSS every ``interval`` seconds; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                total, single = tree_rss(self.process)
            except psutil.NoSuchProcess:
                return
            self.peak_total = max(self.peak_total, total)
            self.peak_single = max(self.peak_single, single)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def finish(self) -> None:
        self._stop_event.set()
        self.join(5)


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) a process and its descendants have used, including
    descendants that have exited and been reaped (their parent's ``children_*``)."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # gone, or not ours to read
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def find_server_pid(name: str) -> int | None:
    """The oldest process called ``name`` whose parent is not one (the postmaster, say)."""
    found = []
    for proc in psutil.process_iter(["name", "ppid", "create_time"]):
        if proc.info["name"] != name:
            continue
        try:
            parent = psutil.Process(proc.info["ppid"]).name()
        except psutil.Error:
            parent = ""
        if parent != name:
            found.append((proc.info["create_time"], proc.pid))
    return min(found)[1] if found else None


BACKEND_PORT = re.compile(r"\((\d+)\)")


def client_ports(process: psutil.Process, server_port: int) -> set[int]:
    """Local ports of a process tree's TCP connections to ``server_port``."""
    ports = set()
    for proc in [process, *process.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == server_port:
                    ports.add(conn.laddr.port)
        except psutil.Error:
            continue
    return ports


class CpuMeter:
    """CPU seconds by role over a phase: gunicorn (master and workers), the Celery
    worker, PostgreSQL — the sessions of gunicorn (``pg:web``), of the worker
    (``pg:worker``) and the rest (``pg:other``: autovacuum, WAL writer, checkpointer,
    other sessions) —, Redis and the benchmark's own client threads. On a 2-core
    machine the sum is what the phase cost; divided by the requests it is the CPU a
    request needs wherever it runs."""

    def __init__(self, *, web: int, worker: int, postgres: int | None, redis: int | None, pg_port: int) -> None:
        self.pids = {"gunicorn": web, "worker": worker}
        self.postgres, self.redis, self.pg_port = postgres, redis, pg_port

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        owners: dict[int, str] = {}
        for name, pid in self.pids.items():
            try:
                process = psutil.Process(pid)
                out[name] = tree_cpu(process)
                owners.update(
                    dict.fromkeys(client_ports(process, self.pg_port), f"pg:{'web' if name == 'gunicorn' else name}")
                )
            except psutil.Error:
                out[name] = 0.0
        pg = {"pg:web": 0.0, "pg:worker": 0.0, "pg:other": 0.0}
        if self.postgres is not None:
            try:
                pg["pg:other"] = tree_cpu(psutil.Process(self.postgres))
                for child in psutil.Process(self.postgres).children():
                    try:
                        found = BACKEND_PORT.search(" ".join(child.cmdline()))
                        owner = owners.get(int(found.group(1))) if found else None
                        if owner is None:
                            continue
                        t = child.cpu_times()
                        used = t.user + t.system + t.children_user + t.children_system
                        pg[owner] += used
                        pg["pg:other"] -= used
                    except psutil.Error:
                        continue
            except psutil.Error:
                pass
        out.update(pg)
        try:
            out["redis"] = tree_cpu(psutil.Process(self.redis)) if self.redis is not None else 0.0
        except psutil.Error:
            out["redis"] = 0.0
        own = psutil.Process().cpu_times()
        out["client"] = own.user + own.system
        return out

    @staticmethod
    def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
        """CPU milliseconds per request, by role, and their total. A session that
        ended in the window moves its CPU to ``pg:other``; the total stays right."""
        used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in before}
        per = {name: 1000.0 * value / max(1, requests) for name, value in used.items()}
        per["total"] = sum(per.values())
        return per


# --- HTTP --------------------------------------------------------------------------------------

TIMING = re.compile(r'db;dur=(?P<db>[0-9.]+);desc="(?P<n>\d+) queries",\s*app;dur=(?P<app>[0-9.]+)')


@dataclass
class Call:
    """One request to send, and the status it must get."""

    method: str
    path: str
    token: str | None = None
    body: Any = None
    expect: int = 200
    idempotency_key: str | None = None
    # A page: the browser session's cookie instead of a token, HTML asked for.
    cookie: str | None = None
    # An htmx fragment request (the hover card).
    htmx: bool = False


@dataclass
class Outcome:
    ms: float
    status: int
    queries: int | None
    db_ms: float | None
    app_ms: float | None
    body: bytes


class Http:
    """One client connection: ``http.client``, reopened when the server closes it
    (gunicorn's sync workers close after each response). Every request carries
    ``X-Forwarded-Proto: https``, as the TLS proxy in front of gunicorn would send."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def send(self, call: Call) -> Outcome:
        headers = {"X-Forwarded-Proto": "https", "Accept": "application/json", "User-Agent": "levy-bench"}
        if call.token:
            headers["Authorization"] = f"Bearer {call.token}"
        if call.cookie:
            headers["Cookie"] = call.cookie
            headers["Accept"] = "text/html"
        if call.htmx:
            headers["HX-Request"] = "true"
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        data = None
        if call.body is not None:
            data = json.dumps(call.body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = self.conn.sock is not None
            started = time.perf_counter()
            try:
                self.conn.request(call.method, call.path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                if reused and attempt == 1 and isinstance(exc, (http.client.RemoteDisconnected, ConnectionError)):
                    continue  # an idle kept-alive connection the server had closed: the request never ran
                elapsed = (time.perf_counter() - started) * 1000
                return Outcome(elapsed, 0, None, None, None, f"{type(exc).__name__}: {exc}".encode())
            elapsed = (time.perf_counter() - started) * 1000
            match = TIMING.search(response.getheader("Server-Timing") or "")
            if match is None:
                return Outcome(elapsed, response.status, None, None, None, payload)
            return Outcome(elapsed, response.status, int(match["n"]), float(match["db"]), float(match["app"]), payload)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def join_all(threads: Iterable[threading.Thread]) -> None:
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short joins, so that Ctrl-C reaches the main thread


def run_calls(port: int, calls: list[Call], clients: int) -> tuple[list[Outcome], float]:
    """Send ``calls`` from ``clients`` threads (each takes the next call when free);
    returns the outcomes in call order and the wall time."""
    outcomes: list[Outcome | None] = [None] * len(calls)
    counter = itertools.count()

    def client() -> None:
        conn = Http(port)
        try:
            while (i := next(counter)) < len(calls):
                outcomes[i] = conn.send(calls[i])
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(max(1, min(clients, len(calls))))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    join_all(threads)
    wall = time.perf_counter() - started
    return [o for o in outcomes if o is not None], wall


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (``values`` sorted)."""
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    low = int(k)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (k - low)


def summarize(outcomes: list[Outcome], wall: float) -> dict[str, Any]:
    ms = sorted(o.ms for o in outcomes)
    timed = [o for o in outcomes if o.queries is not None]
    queries = [o.queries for o in timed if o.queries is not None]
    db_sum = sum(o.db_ms or 0.0 for o in timed)
    app_sum = sum(o.app_ms or 0.0 for o in timed)
    app_sorted = sorted(o.app_ms or 0.0 for o in timed)
    return {
        "requests": len(outcomes),
        "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
        "max_ms": ms[-1] if ms else float("nan"),
        "server_app_p50_ms": percentile(app_sorted, 0.50),
        "server_app_p95_ms": percentile(app_sorted, 0.95),
        "queries_min": min(queries) if queries else None,
        "queries_max": max(queries) if queries else None,
        "db_ms_sum": db_sum,
        "app_ms_sum": app_sum,
        "sql_share": db_sum / app_sum if app_sum else None,
        "without_server_timing": len(outcomes) - len(timed),
        "wall_s": wall,
        "requests_per_second": len(outcomes) / wall if wall else None,
    }


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Config:
    size: str
    quick: bool
    clients: int
    workers: int
    requests: int
    warmup: int
    payments: int
    payment_clients: int
    rss_requests: int
    port: int
    postgres: str
    redis: str
    cache_db: int
    broker_db: int
    database: str
    template: str
    results: Path
    keep_database: bool = False
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(64), repr=False)

    @property
    def database_url(self) -> str:
        return f"{self.postgres}/{self.database}"

    @property
    def result_name(self) -> str:
        return f"bench-{self.size}{'-quick' if self.quick else ''}"

    def server_env(self, *, port: int, workers: int) -> dict[str, str]:
        """The environment of gunicorn and the Celery worker: production mode, as deployed."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "LEVY_", "CELERY_", "GUNICORN_", "EMAIL_", "JWT_"))
            and k not in {"DATABASE_URL", "REDIS_URL", "WEB_CONCURRENCY", "PORT", "LOG_LEVEL"}
        }
        env.update(self.app_env())
        env.update(
            {
                "DJANGO_ENV": "production",
                "LEVY_BIND": f"127.0.0.1:{port}",
                # gunicorn listens on 127.0.0.1 only: its metrics are private.
                "LEVY_METRICS_PRIVATE": "1",
                "WEB_CONCURRENCY": str(workers),
                "GUNICORN_MAX_REQUESTS": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def app_env(self) -> dict[str, str]:
        """What every process of the run shares (the server's and this process's settings)."""
        env = {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": self.secret_key,
            "LEVY_PROVIDER_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"{self.redis}/{self.cache_db}",
            "CELERY_BROKER_URL": f"{self.redis}/{self.broker_db}",
            "DJANGO_STATIC_ROOT": str(self.results / ".bench-static"),
            "LEVY_SERVER_TIMING": "1",
            "LEVY_RATE_LIMITS_ENABLED": "1",
            # The inbox and the email channel as deployed; the emails themselves go nowhere.
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        }
        env.update({f"LEVY_RATE_{scope}": RAISED_RATE for scope in RATE_SCOPES})
        return env

    def public_settings(self) -> dict[str, Any]:
        env = self.server_env(port=self.port, workers=self.workers)
        shown = {k: v for k, v in env.items() if k.startswith(("DJANGO_", "LEVY_", "CELERY_", "GUNICORN_", "EMAIL_"))}
        shown.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "WEB_CONCURRENCY")})
        shown["DJANGO_SECRET_KEY"] = "(random, 86 characters, new for each run)"  # noqa: S105 - a description
        return {
            "server_env": dict(sorted(shown.items())),
            "clients": self.clients,
            "warmup_requests": self.warmup,
            "measured_requests": self.requests,
            "payments": self.payments,
            "payment_clients": self.payment_clients,
            "rss_requests": self.rss_requests,
            "celery_worker": "one worker, -c 1 (prefork)",
        }


def say(message: str) -> None:
    print(message, flush=True)


class Phases:
    """Wall time of each step of the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def start(self, key: str, message: str) -> None:
        self.end()
        say(f"==> {message}")
        self._current = (key, time.perf_counter())

    def end(self) -> None:
        if self._current is not None:
            key, started = self._current
            self.seconds[key] = time.perf_counter() - started
            self._current = None


class BenchError(Exception):
    pass


def manage(config: Config, *args: str, log: Path, production: bool = False) -> None:
    if production:
        env = config.server_env(port=config.port, workers=config.workers)
    else:
        env = {**os.environ, **config.app_env(), "DJANGO_ENV": "development", "DJANGO_DEBUG": "0"}
    with log.open("ab") as out:
        result = subprocess.run(  # noqa: S603 - our own manage.py
            [PYTHON, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise BenchError(f"manage.py {' '.join(args)} failed (exit {result.returncode}); {log}:\n{tail}")


def admin_connection(config: Config) -> psycopg.Connection[Any]:
    return psycopg.connect(f"{config.postgres}/postgres", autocommit=True)


def database_exists(config: Config, name: str) -> bool:
    with admin_connection(config) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def prepare_database(config: Config, logs: Path) -> dict[str, Any]:
    """Recreate the work database from the template (building it if missing), migrate,
    ANALYZE."""
    started = time.perf_counter()
    built = False
    if not database_exists(config, config.template):
        history = config.results / f"dataset-{config.size}-steps.json"
        expected = "this machine's last build" if history.exists() else "a first build on 2 cores"
        say(
            f"==> template {config.template} not found: building data set {config.size}"
            f" (about {format_duration(EXPECTED_BUILD_S[config.size])} for {expected}; log in {logs / 'dataset.log'})"
        )
        with admin_connection(config) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config.database)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config.database)))
        manage(config, "migrate", "--noinput", log=logs / "migrate.log")
        progress = BuildProgress(config.size, history, out=sys.stdout)
        argv = [PYTHON, "manage.py", "generate_dataset", "--size", config.size, "--template", config.template]
        env = {**os.environ, **config.app_env(), "DJANGO_ENV": "development", "DJANGO_DEBUG": "0"}
        if run_with_progress(argv, env=env, cwd=ROOT, log=logs / "dataset.log", progress=progress) != 0:
            raise BenchError(f"building data set {config.size} failed; {logs / 'dataset.log'}")
        built = True
    else:
        # CREATE DATABASE … TEMPLATE fails while anyone else is connected to the template.
        for attempt in itertools.count(1):
            try:
                with admin_connection(config) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config.database))
                    )
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(config.database), sql.Identifier(config.template)
                        )
                    )
                break
            except psycopg.errors.ObjectInUse:
                if attempt >= 20:
                    raise
                say(f"    template {config.template} is in use by another session; retrying in 3 s")
                time.sleep(3)
    restored = time.perf_counter()
    manage(config, "migrate", "--noinput", log=logs / "migrate.log")
    migrated = time.perf_counter()
    with psycopg.connect(config.database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    analyzed = time.perf_counter()
    # The static files, as a deployment collects them (hashed, compressed) — once: the
    # benchmark requests none, and compressing them takes longer than the rest of the set-up.
    collected = (config.results / ".bench-static" / "staticfiles.json").exists()
    if not collected:
        manage(config, "collectstatic", "--noinput", "-v", "0", log=logs / "collectstatic.log", production=True)
    return {
        "template_built": built,
        "restore_s": restored - started,
        "migrate_s": migrated - restored,
        "analyze_s": analyzed - migrated,
        "collectstatic_s": None if collected else time.perf_counter() - analyzed,
    }


def flush_redis(config: Config) -> None:
    claim_redis(
        config.redis,
        (config.cache_db, config.broker_db),
        hint="choose others with --cache-db and --broker-db (make bench BENCH_ARGS='--cache-db 12 --broker-db 13')",
    )


def check_disk(config: Config) -> None:
    """Say what the run will take on disk before it starts, and refuse when it would not fit."""
    with admin_connection(config) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
        size = conn.execute(
            "SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", [config.template]
        ).fetchone()
    plan = disk_plan(size=config.size, data_directory=row[0] if row else "/", template_bytes=size[0] if size else None)
    say(f"    {plan.describe(config.size, config.keep_database)}")
    if not plan.enough:
        raise BenchError(
            f"not enough disk for data set {config.size}: {plan.describe(config.size, config.keep_database)}"
        )


def drop_work_database(config: Config) -> None:
    with contextlib.suppress(psycopg.Error), admin_connection(config) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config.database)))
    say(f"work database {config.database} dropped (--keep-database keeps it)")


def wait_ready(service: Service, port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"{service.name} exited during start-up; {service.log}:\n{service.tail()}")
        conn = Http(port)
        outcome = conn.send(Call("GET", "/readyz"))
        conn.close()
        if outcome.status == 200:
            return
        time.sleep(0.3)
    raise BenchError(f"{service.name} was not ready within {timeout:.0f} s; {service.log}:\n{service.tail()}")


def start_gunicorn(config: Config, *, name: str, port: int, workers: int, logs: Path) -> Service:
    if not port_is_free(port):
        raise BenchError(f"port {port} is in use: choose another with --port")
    service = Service(
        name,
        [str(BIN / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi"],
        config.server_env(port=port, workers=workers),
        logs / f"{name}.log",
    )
    wait_ready(service, port)
    return service


def worker_queues() -> list[str]:
    """The queues config/celery.py routes to (or, if it declares none, the ones the
    notification tasks are sent to, and the default queue)."""
    from django.conf import settings

    from config.celery import app
    from levy.notifications.services import HIGH_QUEUE, NORMAL_QUEUE

    declared = [q.name for q in (app.conf.task_queues or [])]
    queues = declared or [HIGH_QUEUE, NORMAL_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE]
    return list(dict.fromkeys(queues))


def start_worker(config: Config, *, name: str, logs: Path) -> Service:
    log = logs / f"{name}.log"
    log.write_bytes(b"")
    service = Service(
        name,
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "-c",
            "1",
            "-Q",
            ",".join(worker_queues()),
            "-n",
            f"{name}-{os.getpid()}@%h",
            "-l",
            "info",
        ],
        config.server_env(port=config.port, workers=config.workers),
        log,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"the Celery worker exited during start-up; {log}:\n{service.tail()}")
        if " ready." in log.read_text(errors="replace"):
            return service
        time.sleep(0.2)
    raise BenchError(f"the Celery worker was not ready within 90 s; {log}:\n{service.tail()}")


def purge_broker() -> int:
    """Drop the queued tasks (the fan-outs of the bills created for the latency run)."""
    from config.celery import app

    purged = 0
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in worker_queues():
            purged += int(channel.queue_purge(queue) or 0)
    return purged


# --- the data the run uses ---------------------------------------------------------------------


@dataclass
class Estate:
    cluster_id: str
    admin_user_id: str
    currency: str
    today: datetime.date
    resident_ids: list[str]  # user ids, earliest members first
    wide_bill_ids: list[str]
    counts: dict[str, int]

    @property
    def base(self) -> str:
        return f"/api/v1/clusters/{self.cluster_id}"

    @property
    def management(self) -> str:
        return f"{self.base}/management"


def load_estate() -> Estate:
    from django.db import connection

    from levy.billing.models import Bill
    from levy.billing.selectors import estate_today
    from levy.estates.models import Cluster, Membership

    admin = Membership.objects.select_related("cluster").get(user__email=ADMIN_EMAIL)
    cluster: Cluster = admin.cluster
    residents = list(
        Membership.objects.filter(cluster=cluster, role="resident", active=True, is_resident=True)
        .order_by("joined_at", "id")
        .values_list("user_id", flat=True)
    )
    wide = list(
        Bill.objects.filter(cluster=cluster, user__isnull=True, cancelled_at__isnull=True)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    counts = {}
    with connection.cursor() as cursor:
        for label, query, params in [
            (
                "residents_in_measured_estate",
                "estates_membership WHERE cluster_id = %s AND role = 'resident'",
                [cluster.pk],
            ),
            ("bills_in_measured_estate", "billing_bill WHERE cluster_id = %s", [cluster.pk]),
            ("estates", "estates_cluster", []),
            ("members_in_all_estates", "estates_membership", []),
            ("acknowledgements", "billing_billacknowledgement", []),
            ("ledger_entries", "wallets_transaction", []),
            ("open_disputes", "billing_billdispute WHERE status = 'open'", []),
        ]:
            cursor.execute(f"SELECT count(*) FROM {query}", params)  # noqa: S608 - constant table names
            row = cursor.fetchone()
            counts[label] = int(row[0]) if row else 0
    return Estate(
        cluster_id=str(cluster.pk),
        admin_user_id=str(admin.user_id),
        currency=cluster.currency,
        today=estate_today(),
        resident_ids=[str(r) for r in residents],
        wide_bill_ids=[str(b) for b in wide],
        counts=counts,
    )


def access_tokens(user_ids: Iterable[str]) -> dict[str, str]:
    """Access tokens issued by the application's own code (simplejwt, with the server's
    signing key): signing in 1,000 residents over HTTP would spend minutes hashing
    passwords before anything is measured."""
    from rest_framework_simplejwt.tokens import AccessToken

    from levy.accounts.models import User

    users = User.objects.in_bulk(list(user_ids))
    return {str(pk): str(AccessToken.for_user(user)) for pk, user in users.items()}


def batched(items: list[str], size: int) -> Iterable[list[str]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


def interleave(groups: list[list[tuple[str, str, Decimal]]]) -> list[tuple[str, str, Decimal]]:
    """One item of each group in turn, so that neighbouring requests are by different people."""
    out: list[tuple[str, str, Decimal]] = []
    for row in itertools.zip_longest(*groups):
        out.extend(item for item in row if item is not None)
    return out


def payable_pairs(estate: Estate, needed: int, exclude: set[str]) -> dict[str, list[tuple[str, Decimal]]]:
    """(resident → [(bill, amount)]) that the application itself says can be paid now
    (``member_bills(...).can_pay``: acknowledged, not paid, waived, disputed or
    cancelled, and the due date allows it), earliest members first, ``needed`` in all."""
    from levy.billing.selectors import member_bills
    from levy.estates.models import Membership

    found: dict[str, list[tuple[str, Decimal]]] = {}
    total = 0
    for batch in batched(estate.resident_ids, 100):
        members = {m.user_id: m for m in Membership.objects.filter(cluster_id=estate.cluster_id, user_id__in=batch)}
        for user_id in batch:
            if user_id in exclude:
                continue
            membership = members[uuid.UUID(user_id)]
            rows = list(
                member_bills(membership=membership, today=estate.today).filter(can_pay=True).values_list("pk", "amount")
            )
            if not rows:
                continue
            take = rows[: needed - total]
            found[user_id] = [(str(pk), amount) for pk, amount in take]
            total += len(take)
            if total >= needed:
                return found
    raise BenchError(f"only {total} payable (resident, bill) pairs in the estate; {needed} needed")


def unacknowledged_pairs(estate: Estate, needed: int, exclude: set[str], per_member: int = 3) -> list[tuple[str, str]]:
    """(resident, bill) pairs not yet acknowledged (bill not cancelled), latest members
    first, ``per_member`` each."""
    from levy.billing.selectors import member_bills
    from levy.estates.models import Membership

    groups: list[list[tuple[str, str, Decimal]]] = []
    total = 0
    for batch in batched(estate.resident_ids[::-1], 100):
        members = {m.user_id: m for m in Membership.objects.filter(cluster_id=estate.cluster_id, user_id__in=batch)}
        for user_id in batch:
            if user_id in exclude:
                continue
            rows = list(
                member_bills(membership=members[uuid.UUID(user_id)], today=estate.today)
                .filter(f_acknowledged=False, cancelled_at__isnull=True)
                .values_list("pk", flat=True)[:per_member]
            )
            if rows:
                groups.append([(user_id, str(pk), Decimal(0)) for pk in rows])
                total += len(rows)
            if total >= needed:
                return [(u, b) for u, b, _ in interleave(groups)][:needed]
    raise BenchError(f"only {total} unacknowledged (resident, bill) pairs in the estate; {needed} needed")


def wallet_shortfalls(estate: Estate, pairs: dict[str, list[tuple[str, Decimal]]]) -> dict[str, Decimal]:
    from levy.wallets.models import Wallet

    balances = dict(
        Wallet.objects.filter(cluster_id=estate.cluster_id, user_id__in=list(pairs)).values_list("user_id", "balance")
    )
    short = {}
    for user_id, items in pairs.items():
        owed = sum((amount for _, amount in items), Decimal(0))
        balance = balances.get(uuid.UUID(user_id), Decimal(0))
        if owed > balance:
            short[user_id] = owed - balance + Decimal("1000.00")
    return short


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Run:
    config: Config
    estate: Estate
    tokens: dict[str, str]
    logs: Path
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    cpu: CpuMeter | None = None
    # Waits until the worker has caught up (set once it runs): the CPU of a phase's
    # notifications is counted in that phase.
    drain: Callable[[float], float] | None = None

    def cpu_window(self) -> Callable[[int], dict[str, Any] | None]:
        """Start counting CPU; the returned function ends the window (after the
        worker has drained) and returns CPU milliseconds per request by role."""
        if self.cpu is None:
            return lambda requests: None
        meter, before, since = self.cpu, self.cpu.snapshot(), time.time()

        def finish(requests: int) -> dict[str, Any] | None:
            drained = self.drain(since) if self.drain is not None else 0.0
            per = meter.per_request(before, meter.snapshot(), requests)
            return {**per, "drain_s": drained}

        return finish

    def token(self, user_id: str) -> str:
        return self.tokens[user_id]

    @property
    def admin(self) -> str:
        return self.tokens[self.estate.admin_user_id]

    def check(self, phase: str, calls: list[Call], outcomes: list[Outcome]) -> int:
        """Record every response whose status is not the expected one."""
        bad = 0
        for call, outcome in zip(calls, outcomes, strict=True):
            if outcome.status != call.expect:
                bad += 1
                if sum(1 for e in self.errors if e["phase"] == phase) < 20:
                    self.errors.append(
                        {
                            "phase": phase,
                            "method": call.method,
                            "path": call.path,
                            "expected": call.expect,
                            "status": outcome.status,
                            "body": outcome.body[:400].decode(errors="replace"),
                        }
                    )
        if bad:
            counts = self.extra.setdefault("error_counts", {})
            counts[phase] = counts.get(phase, 0) + bad
        return bad

    def measure(self, key: str, calls: list[Call], *, clients: int | None = None) -> dict[str, Any]:
        """Warm-up, then the measured requests, from ``clients`` threads."""
        clients = clients or self.config.clients
        warm, measured = calls[: self.config.warmup], calls[self.config.warmup :]
        warm_out, _ = run_calls(self.config.port, warm, clients)
        warm_errors = self.check(f"{key} (warm-up)", warm, warm_out)
        cpu = self.cpu_window()
        outcomes, wall = run_calls(self.config.port, measured, clients)
        errors = self.check(key, measured, outcomes)
        summary = summarize(outcomes, wall)
        summary["cpu_ms_per_request"] = cpu(len(outcomes))
        summary.update({"warmup": len(warm), "clients": clients, "errors": errors + warm_errors})
        first_ok = next((o for o in outcomes if o.status == 200), None)
        if first_ok is not None:
            try:
                body = json.loads(first_ok.body)
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("results"), list):
                summary["rows_in_first_page"] = len(body["results"])
        self.latency[key] = summary
        say(
            f"    {key:<15} p50 {summary['p50_ms']:7.1f} ms  p95 {summary['p95_ms']:7.1f} ms"
            f"  ({summary['requests']} requests, {summary['requests_per_second']:.0f}/s, {summary['errors']} errors)"
        )
        return summary


def count_needed(config: Config) -> int:
    return config.warmup + config.requests


def read_calls(run: Run) -> dict[str, list[Call]]:
    estate, n = run.estate, count_needed(run.config)
    readers = estate.resident_ids[:50]
    bills = estate.wide_bill_ids or ["-"]
    return {
        "dashboard": [Call("GET", f"{estate.management}/dashboard/", run.admin) for _ in range(n)],
        "bill_list": [Call("GET", f"{estate.management}/bills/?page_size=50", run.admin) for _ in range(n)],
        "member_list": [Call("GET", f"{estate.management}/members/?page_size=50", run.admin) for _ in range(n)],
        "bill_members": [
            Call("GET", f"{estate.management}/bills/{bills[i % len(bills)]}/members/?page_size=50", run.admin)
            for i in range(n)
        ],
        "resident_bills": [
            Call("GET", f"{estate.base}/bills/?page_size=50", run.token(readers[i % len(readers)])) for i in range(n)
        ],
    }


def web_sessions(user_ids: Iterable[str]) -> dict[str, str]:
    """A signed-in browser session per person, as ``django.contrib.auth.login`` stores
    it (user id, backend, password hash), returned as each one's Cookie header: the
    pages are measured, not the sign-in form (whose password hashing is deliberately
    slow)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from levy.accounts.models import User

    store = import_module(settings.SESSION_ENGINE).SessionStore
    cookies = {}
    for pk, user in User.objects.in_bulk(list(user_ids)).items():
        session = store()
        session[SESSION_KEY] = user._meta.pk.value_to_string(user)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        cookies[str(pk)] = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    return cookies


def page_calls(run: Run, cookies: dict[str, str], bills_of: dict[str, list[str]]) -> dict[str, list[Call]]:
    """The pages of web.md, as the browser asks for them: the manager's as the estate's
    admin, the resident's as residents who owe (``bills_of``: a bill that applies to each)."""
    estate, n = run.estate, count_needed(run.config)
    web = f"/estates/{estate.cluster_id}"
    admin = cookies[estate.admin_user_id]
    members = estate.resident_ids[:50]
    wide = estate.wide_bill_ids[:20] or ["-"]
    residents = sorted(bills_of)[:50]

    def manager(path: Callable[[int], str], htmx: bool = False) -> list[Call]:
        return [Call("GET", path(i), cookie=admin, htmx=htmx) for i in range(n)]

    def resident(path: Callable[[str, int], str]) -> list[Call]:
        return [
            Call("GET", path(residents[i % len(residents)], i), cookie=cookies[residents[i % len(residents)]])
            for i in range(n)
        ]

    return {
        "page_dashboard": manager(lambda i: f"{web}/dashboard/"),
        "page_bills": manager(lambda i: f"{web}/bills/"),
        "page_bill": manager(lambda i: f"{web}/bills/{wide[i % len(wide)]}/"),
        "page_bill_new": manager(lambda i: f"{web}/bills/new/"),
        "page_members": manager(lambda i: f"{web}/members/"),
        "hover_card": manager(lambda i: f"{web}/members/?card={members[i % len(members)]}", htmx=True),
        "page_member": manager(lambda i: f"{web}/members/{members[i % len(members)]}/"),
        "page_disputes": manager(lambda i: f"{web}/disputes/"),
        "page_transactions": manager(lambda i: f"{web}/transactions/"),
        "page_schedules": manager(lambda i: f"{web}/schedules/"),
        "page_my_bills": resident(lambda u, i: f"{web}/my-bills/"),
        "page_my_bill": resident(lambda u, i: f"{web}/my-bills/{bills_of[u][0]}/"),
        "page_wallet": resident(lambda u, i: f"{web}/wallet/"),
        "page_notifications": resident(lambda u, i: "/notifications/"),
    }


def receipt_calls(run: Run, payments: list[Call]) -> list[Call]:
    """Each payer downloads the receipt of a payment the latency run made (``payments``,
    found by their idempotency keys), as many times as needed."""
    from levy.wallets.models import Transaction

    paid = list(
        Transaction.objects.filter(
            cluster_id=run.estate.cluster_id,
            type="bill_payment",
            status="completed",
            idempotency_key__in=[c.idempotency_key for c in payments],
        )
        .order_by("created_at")
        .values_list("pk", "payer_id")[: count_needed(run.config)]
    )
    if not paid:
        raise BenchError("no payment of the latency run to download a receipt of")
    return [
        Call("GET", f"{run.estate.base}/transactions/{pk}/receipt/", run.token(str(payer)))
        for pk, payer in (paid[i % len(paid)] for i in range(count_needed(run.config)))
    ]


def bill_body(estate: Estate, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": "Estate-wide levy issued by the benchmark.",
        "category": "service_charge",
        "amount": "15000.00",
        "due_date": (estate.today + datetime.timedelta(days=30)).isoformat(),
        "allow_payment_after_due": False,
    }


def pay_calls(run: Run, pairs: list[tuple[str, str, Decimal]], prefix: str) -> list[Call]:
    return [
        Call(
            "POST",
            f"{run.estate.base}/bills/{bill_id}/pay/",
            run.token(user_id),
            expect=201,
            idempotency_key=f"{prefix}-{i}-{uuid.uuid4().hex[:12]}",
        )
        for i, (user_id, bill_id, _) in enumerate(pairs)
    ]


def fill_inboxes(run: Run, bills_of: dict[str, list[str]]) -> int:
    """Give each resident of ``bills_of`` an inbox of ``INBOX_SIZE`` payment reminders
    about their own bills, a third of them read (outside any measurement): recorded as
    the service records them (``notify``, in a transaction) and delivered by the worker,
    so that the inbox page measured is a full page, with a second one, and the header's
    unread count is not zero. Returns how many notifications the inboxes hold."""
    from django.db import transaction
    from django.utils import timezone

    from levy.billing.models import Bill
    from levy.estates.models import Cluster
    from levy.notifications.events import NotificationEvents
    from levy.notifications.models import Notification
    from levy.notifications.recipients import Recipients
    from levy.notifications.services import bill_context, notify

    cluster = Cluster.objects.get(pk=run.estate.cluster_id)
    bills = Bill.objects.in_bulk([b for items in bills_of.values() for b in items])
    contexts = {str(pk): bill_context(bill) for pk, bill in bills.items()}
    keys = {user_id: [f"bench-inbox:{user_id}:{n}" for n in range(INBOX_SIZE)] for user_id in bills_of}
    started = time.time()
    with transaction.atomic():
        for user_id, bill_ids in bills_of.items():
            for n, key in enumerate(keys[user_id]):
                notify(
                    event=NotificationEvents.PAYMENT_REMINDER,
                    cluster=cluster,
                    recipients=Recipients.users(user_id),
                    context=contexts[bill_ids[n % len(bill_ids)]],
                    event_key=key,
                )
    assert run.drain is not None, "the worker's drainer is set before the inboxes are filled"
    run.drain(started)
    read = [key for user_keys in keys.values() for key in user_keys[::3]]
    Notification.objects.filter(event_key__in=read).update(read_at=timezone.now())
    held = Notification.objects.filter(recipient_id__in=list(bills_of), event_key__startswith="bench-inbox:").count()
    if held != INBOX_SIZE * len(bills_of):
        raise BenchError(f"the inboxes hold {held} notifications, not {INBOX_SIZE * len(bills_of)}")
    return held


def top_up_wallets(run: Run, pairs: dict[str, list[tuple[str, Decimal]]]) -> int:
    """Credit the wallets that cannot cover their bills, through the API (outside
    any measurement)."""
    short = wallet_shortfalls(run.estate, pairs)
    calls = [
        Call(
            "POST",
            f"{run.estate.management}/wallets/{user_id}/credit/",
            run.admin,
            body={"amount": f"{amount:.2f}", "note": "Benchmark top-up"},
            expect=201,
            idempotency_key=f"bench-topup-{user_id}",
        )
        for user_id, amount in short.items()
    ]
    outcomes, _ = run_calls(run.config.port, calls, run.config.clients)
    run.check("wallet top-up", calls, outcomes)
    return len(calls)


def measure_throughput(run: Run, pairs: dict[str, list[tuple[str, Decimal]]]) -> dict[str, Any]:
    """``payment_clients`` clients pay distinct (resident, bill) pairs as fast as they
    can; each resident's payments go to one client."""
    clients = run.config.payment_clients
    lanes: list[list[Call]] = [[] for _ in range(clients)]
    loads = [0] * clients
    for user_id, items in sorted(pairs.items(), key=lambda kv: -len(kv[1])):
        lane = loads.index(min(loads))
        lanes[lane].extend(pay_calls(run, [(user_id, bill, amount) for bill, amount in items], f"bench-tp-{lane}"))
        loads[lane] += len(items)
    results: list[list[Outcome]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(lane: int) -> None:
        conn = Http(run.config.port)
        barrier.wait()
        try:
            for call in lanes[lane]:
                results[lane].append(conn.send(call))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(lane,), daemon=True) for lane in range(clients)]
    for thread in threads:
        thread.start()
    cpu = run.cpu_window()
    barrier.wait()
    started = time.perf_counter()
    join_all(threads)
    wall = time.perf_counter() - started
    calls = [c for lane in lanes for c in lane]
    outcomes = [o for lane in results for o in lane]
    errors = run.check("payment throughput", calls, outcomes)
    successes = sum(1 for o in outcomes if o.status == 201)
    summary = summarize(outcomes, wall)
    summary["cpu_ms_per_request"] = cpu(len(outcomes))
    return {
        "clients": clients,
        "payments_sent": len(calls),
        "successful": successes,
        "errors": errors,
        "wall_s": wall,
        "payments_per_second": successes / wall if wall else 0.0,
        "latency": summary,
        "keys_prefix": "bench-tp-",
    }


def outbox_drainer(worker: Service, timeout: float = 120.0) -> Callable[[float], float]:
    """A function that waits until every notification recorded since ``since`` (a
    Unix time) is delivered and sent, while the worker runs; returns the seconds it
    waited."""
    from levy.notifications.models import Delivery, DeliveryStatus, NotificationIntent

    def drain(since: float) -> float:
        started = time.monotonic()
        after = datetime.datetime.fromtimestamp(since - 1, tz=datetime.UTC)
        while worker.alive() and time.monotonic() - started < timeout:
            waiting = (
                NotificationIntent.objects.filter(created_at__gte=after, delivered_at__isnull=True).exists()
                or Delivery.objects.filter(
                    intent__created_at__gte=after, status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
                ).exists()
            )
            if not waiting:
                break
            time.sleep(0.05)
        return time.monotonic() - started

    return drain


def verify_money() -> dict[str, int]:
    """The invariants, straight from PostgreSQL, over the whole database."""
    from django.db import connection

    checks = {
        # Live payments: completed, and not refunded while the bill was live (decision 0028).
        "bill_member_pairs_paid_twice": """
            SELECT count(*) FROM (
                SELECT 1 FROM wallets_transaction p WHERE type = 'bill_payment' AND status = 'completed'
                AND NOT EXISTS (SELECT 1 FROM wallets_transaction r WHERE r.reverses_id = p.id AND r.reopens_bill)
                GROUP BY bill_id, payer_id HAVING count(*) > 1) AS twice""",
        "negative_balances": "SELECT count(*) FROM wallets_wallet WHERE balance < 0",
        "balances_not_equal_to_ledger": """
            SELECT count(*) FROM wallets_wallet w
            LEFT JOIN (SELECT wallet_id, sum(amount) AS total FROM wallets_transaction
                       WHERE status = 'completed' GROUP BY wallet_id) t ON t.wallet_id = w.id
            WHERE w.balance <> coalesce(t.total, 0)""",
        "throughput_payments_completed": """
            SELECT count(*) FROM wallets_transaction
            WHERE type = 'bill_payment' AND status = 'completed' AND idempotency_key LIKE 'bench-tp-%%'""",
        "throughput_payments_failed": """
            SELECT count(*) FROM wallets_transaction
            WHERE type = 'bill_payment' AND status = 'failed' AND idempotency_key LIKE 'bench-tp-%%'""",
    }
    out = {}
    with connection.cursor() as cursor:
        for name, query in checks.items():
            cursor.execute(query)
            row = cursor.fetchone()
            out[name] = int(row[0]) if row else -1
    return out


def measure_fanout(run: Run, worker: Service) -> dict[str, Any]:
    """Create one estate-wide bill; time from its response until every member it
    applies to has the PAYMENT_DUE notification stored, polling PostgreSQL; sample the
    worker's process tree RSS meanwhile."""
    from django.db import connection

    idle_total, idle_single = tree_rss(psutil.Process(worker.pid))
    sampler = RssSampler(worker.pid, 0.02)
    sampler.start()
    call = Call(
        "POST",
        f"{run.estate.management}/bills/",
        run.admin,
        body=bill_body(run.estate, "Fan-out levy"),
        expect=201,
    )
    conn = Http(run.config.port)
    outcome = conn.send(call)
    responded = time.perf_counter()
    conn.close()
    if run.check("fan-out bill", [call], [outcome]):
        sampler.finish()
        raise BenchError(f"creating the fan-out bill failed: {outcome.status} {outcome.body[:300]!r}")
    bill = json.loads(outcome.body)
    expected = int(bill["stats"]["eligible"])
    poll = 0.05
    stored_after = None
    delivered = False
    count = 0
    deadline = responded + 600
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM notifications_notificationintent WHERE event_key = %s", [f"PAYMENT_DUE:bill:{bill['id']}"]
        )
        row = cursor.fetchone()
        if row is None:
            sampler.finish()
            raise BenchError("the bill's PAYMENT_DUE intent is missing")
        intent_id = row[0]
        while time.perf_counter() < deadline:
            if stored_after is None:
                cursor.execute("SELECT count(*) FROM notifications_notification WHERE intent_id = %s", [intent_id])
                count = int(cursor.fetchone()[0])
                if count >= expected:
                    stored_after = time.perf_counter() - responded
            cursor.execute(
                "SELECT delivered_at IS NOT NULL FROM notifications_notificationintent WHERE id = %s", [intent_id]
            )
            delivered = bool(cursor.fetchone()[0])
            if stored_after is not None and delivered:
                break
            if not worker.alive():
                break
            time.sleep(poll)
        cursor.execute(
            "SELECT extract(epoch FROM delivered_at - created_at), delivered_count"
            " FROM notifications_notificationintent WHERE id = %s",
            [intent_id],
        )
        server_side = cursor.fetchone()
    sampler.finish()
    if stored_after is None:
        run.errors.append(
            {"phase": "fan-out", "status": 0, "expected": expected, "body": f"{count} of {expected} stored in time"}
        )
    return {
        "bill_id": bill["id"],
        "recipients": expected,
        "stored": count if stored_after is None else expected,
        "seconds_until_all_stored": stored_after,
        "poll_interval_s": poll,
        "intent_created_to_delivered_s": float(server_side[0]) if server_side and server_side[0] is not None else None,
        "create_request_ms": outcome.ms,
        "worker_rss_idle_mb": idle_total / MB,
        "worker_rss_idle_largest_process_mb": idle_single / MB,
        "worker_peak_rss_mb": sampler.peak_total / MB,
        "worker_peak_rss_largest_process_mb": sampler.peak_single / MB,
        "rss_samples": sampler.samples,
    }


def mixed_reads(run: Run, count: int) -> list[Call]:
    """A cycle of 24 requests over the read endpoints of api.md: 16 as residents (their
    bills 6 times, wallet 3, ledger 3, notifications 2, ``/me/`` 2), 8 as the admin
    (dashboard, bill list, member list, a bill's members, a bill twice, the ledger,
    disputes); residents and bills rotate."""
    estate = run.estate
    residents = estate.resident_ids[:200]
    bills = estate.wide_bill_ids or ["-"]
    admin = run.admin
    m = estate.management

    def resident(i: int) -> str:
        return run.token(residents[i % len(residents)])

    def bill(i: int) -> str:
        return bills[i % len(bills)]

    weighted: list[tuple[int, Callable[[int], Call]]] = [
        (6, lambda i: Call("GET", f"{estate.base}/bills/?page_size=50", resident(i))),
        (3, lambda i: Call("GET", f"{estate.base}/wallet/", resident(i))),
        (3, lambda i: Call("GET", f"{estate.base}/wallet/transactions/", resident(i))),
        (2, lambda i: Call("GET", "/api/v1/notifications/", resident(i))),
        (2, lambda i: Call("GET", "/api/v1/me/", resident(i))),
        (1, lambda i: Call("GET", f"{m}/dashboard/", admin)),
        (1, lambda i: Call("GET", f"{m}/bills/?page_size=50", admin)),
        (1, lambda i: Call("GET", f"{m}/members/?page_size=50", admin)),
        (1, lambda i: Call("GET", f"{m}/bills/{bill(i)}/members/?page_size=50", admin)),
        (2, lambda i: Call("GET", f"{m}/bills/{bill(i)}/", admin)),
        (1, lambda i: Call("GET", f"{m}/transactions/", admin)),
        (1, lambda i: Call("GET", f"{m}/disputes/", admin)),
    ]
    # Spread each endpoint's turns over the cycle rather than sending them back to back.
    slots = sorted((k / weight, n, maker) for n, (weight, maker) in enumerate(weighted) for k in range(weight))
    cycle = [maker for _, _, maker in slots]
    return [cycle[i % len(cycle)](i) for i in range(count)]


def measure_web_rss(run: Run) -> dict[str, Any]:
    """One gunicorn worker (WEB_CONCURRENCY=1): its RSS after a warm-up and after
    ``rss_requests`` mixed read requests."""
    config = run.config
    port = config.port + 1
    server = start_gunicorn(config, name="gunicorn-rss", port=port, workers=1, logs=run.logs)
    try:
        children = psutil.Process(server.pid).children()
        if len(children) != 1:
            raise BenchError(f"expected one gunicorn worker, found {len(children)}")
        worker = children[0]
        warm_calls = mixed_reads(run, 300 if config.quick else 600)
        warm_out, _ = run_calls(port, warm_calls, config.clients)
        run.check("web RSS (warm-up)", warm_calls, warm_out)
        after_warmup = worker.memory_info().rss
        calls = mixed_reads(run, config.rss_requests)
        trend = []
        started = time.perf_counter()
        for first in range(0, len(calls), 1000):
            chunk = calls[first : first + 1000]
            outcomes, _ = run_calls(port, chunk, config.clients)
            run.check("web RSS", chunk, outcomes)
            trend.append({"requests": first + len(chunk), "rss_mb": worker.memory_info().rss / MB})
        wall = time.perf_counter() - started
        after = worker.memory_info().rss
        same = [p.pid for p in psutil.Process(server.pid).children()] == [worker.pid]
    finally:
        server.stop()
    return {
        "worker_pid_unchanged": same,
        "warmup_requests": len(warm_calls),
        "requests": len(calls),
        "wall_s": wall,
        "rss_after_warmup_mb": after_warmup / MB,
        "rss_after_mb": after / MB,
        "growth_mb": (after - after_warmup) / MB,
        "trend": trend,
    }


def worker_pid(master: int) -> int:
    children = psutil.Process(master).children()
    assert len(children) == 1, f"expected one gunicorn worker, found {len(children)}"
    return children[0].pid


def download(port: int, path: str, token: str, worker: int) -> dict[str, Any]:
    """One export, read as it streams, with the worker's RSS sampled meanwhile."""
    sampler = RssSampler(worker, interval=0.01)
    process = psutil.Process(worker)
    before = process.memory_info().rss
    timeline: list[tuple[float, int]] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
    sampler.start()
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    first = response.read1(65536)
    first_byte_s = time.perf_counter() - started
    received, newlines, tail = len(first), first.count(b"\n"), first[-1:]
    error = ""
    try:
        while chunk := response.read1(65536):
            received += len(chunk)
            newlines += chunk.count(b"\n")
            tail = chunk[-1:]
            timeline.append((time.perf_counter() - started, process.memory_info().rss))
    except (OSError, http.client.HTTPException) as exc:
        # The server ended the response early: a worker killed by gunicorn's timeout.
        error = f"{type(exc).__name__}: {exc}"
    total_s = time.perf_counter() - started
    sampler.finish()
    conn.close()
    after = process.memory_info().rss if process.is_running() else 0
    # The worker's memory once the first rows have left (the first 10% of the time is
    # imports and first-use caches): flat means its spread stays small whatever the rows.
    steady = [rss for t, rss in timeline if t >= total_s * 0.1] or [after]
    return {
        "status": response.status,
        "rows": newlines - 1,  # the header is one line
        "complete": tail == b"\n" and not error,
        "error": error,
        "bytes": received,
        "first_byte_ms": first_byte_s * 1000,
        "total_s": total_s,
        "rows_per_second": (newlines - 1) / total_s if total_s else None,
        "rss_before_mb": before / MB,
        "rss_peak_mb": sampler.peak_single / MB,
        "rss_after_mb": after / MB,
        "rss_peak_growth_mb": (sampler.peak_single - before) / MB,
        "rss_steady_spread_mb": (max(steady) - min(steady)) / MB,
        "rss_samples": sampler.samples,
    }


def measure_export(run: Run) -> dict[str, Any]:
    """The members export (every member with their bill summary: 50,000 rows at L) from
    ONE gunicorn worker, read as it streams: time to the first byte, total time, and the
    worker's RSS before, at its peak and over the stream (docs/performance.md, "CSV
    exports"; ``scripts/export_bench.py`` measures the other exports the same way)."""
    from levy.estates.models import Membership

    config = run.config
    port = config.port + 1
    path = f"{run.estate.management}/members/export.csv"
    expected = Membership.objects.filter(cluster_id=run.estate.cluster_id).count()
    server = start_gunicorn(config, name="gunicorn-export", port=port, workers=1, logs=run.logs)
    try:
        worker = worker_pid(server.pid)
        # The first request of a process imports and connects: a small export first.
        download(port, f"{run.estate.management}/bills/export.csv", run.admin, worker)
        outcome = download(port, path, run.admin, worker)
        time.sleep(1)  # a worker killed by gunicorn's timeout is replaced within a second
        outcome["same_worker"] = worker_pid(server.pid) == worker
    finally:
        server.stop()
    outcome.pop("rss_samples", None)
    outcome.update({"path": path, "expected_rows": expected})
    if outcome["status"] != 200 or not outcome["complete"] or outcome["rows"] != expected:
        run.errors.append(
            {
                "phase": "export",
                "method": "GET",
                "path": path,
                "expected": 200,
                "status": outcome["status"],
                "body": f"{outcome['rows']} rows of {expected}; complete {outcome['complete']}; {outcome['error']}",
            }
        )
    return outcome


def late_fee_bill(admin: Any, cluster_id: object, due: datetime.date, title: str) -> Any:
    """An estate-wide bill of 15,000.00 with a fixed late fee of 1,500.00 after 3 grace
    days, created through the billing service (``scripts/bench_late_fees.py`` too)."""
    from django.db import transaction

    from levy.billing.services import bill_create_cluster_wide
    from levy.billing.validation import BillInput
    from levy.estates.access import access_cluster

    with transaction.atomic():
        return bill_create_cluster_wide(
            access=access_cluster(admin, cluster_id),
            data=BillInput(
                title=title,
                description="",
                category="service_charge",
                amount=Decimal("15000.00"),
                due_date=due,
                allow_payment_after_due=True,
                late_fee_kind="fixed",
                late_fee_value=Decimal("1500.00"),
                late_fee_grace_days=3,
            ),
        )


def fan_out_late_fees(bill: Any) -> dict[str, Any]:
    """The fan-out of the one intent a late-fee run records for ``bill``, as the worker
    runs it (``intent_deliver``), inbox only, timed in this process."""
    from django.test import override_settings

    from levy.notifications.fanout import intent_deliver
    from levy.notifications.models import Notification, NotificationIntent

    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:late-fees:bill:{bill.pk}")
    with override_settings(LEVY_NOTIFICATION_CHANNELS=[]):
        started = time.perf_counter()
        written = intent_deliver(intent.pk)
        seconds = time.perf_counter() - started
    inbox = Notification.objects.filter(event_key=intent.event_key).count()
    return {"fanout_written": written, "fanout_inbox": inbox, "fanout_s": seconds}


def measure_late_fees(run: Run) -> dict[str, Any]:
    """Late fees to every resident of the measured estate (50,000 at L): a new
    estate-wide bill with a fixed late fee, then, in this process, the late-fee run the
    day after its grace period (``late_fees_issue_due``: one INSERT … SELECT of the fees
    and their counters, the mark, the audit event and one intent, committed) and the
    fan-out of that one intent to the fee holders' inboxes. Runs last: it adds a bill
    per resident to the estate."""
    from levy.accounts.models import User
    from levy.billing.late_fees import late_fees_issue_due
    from levy.billing.models import Bill

    admin = User.objects.get(pk=run.estate.admin_user_id)
    due = run.estate.today + datetime.timedelta(days=1)
    bill = late_fee_bill(admin, run.estate.cluster_id, due, "Benchmark service charge with a late fee")
    started = time.perf_counter()
    result = late_fees_issue_due(due + datetime.timedelta(days=4))
    issued_s = time.perf_counter() - started
    return {
        "bill_id": str(bill.pk),
        "run_result": str(result),
        "fees": Bill.objects.filter(late_fee_of=bill).count(),
        "issue_s": issued_s,
        **fan_out_late_fees(bill),
    }


def measure_baseline(run: Run, bill_id: str, create_summary: dict[str, Any] | None, reps: int = 3) -> dict[str, Any]:
    """What our one estate-wide bill wrote, against a table that stores one bill row per
    resident (the bill's columns copied for each member it applies to, with the bill
    table's own indexes and checks), filled for the same bill in one INSERT … SELECT."""
    from django.db import connection

    table = sql.Identifier(SCRATCH_SCHEMA, "bill_per_resident")
    with connection.cursor() as cursor:
        # Ours: the bill row, what points at it (its counters, …), its outbox row and its audit row.
        cursor.execute("SELECT 1, pg_column_size(b.*) FROM billing_bill b WHERE b.id = %s", [bill_id])
        row = cursor.fetchone()
        parts: dict[str, tuple[int, int]] = {"billing_bill": (int(row[0]), int(row[1]))}
        cursor.execute(
            """SELECT c.table_name FROM information_schema.columns c
               JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
               WHERE c.table_schema = 'public' AND c.column_name = 'bill_id' AND t.table_type = 'BASE TABLE'
               ORDER BY 1"""
        )
        for (name,) in cursor.fetchall():
            cursor.execute(
                sql.SQL("SELECT count(*), coalesce(sum(pg_column_size(x.*)), 0) FROM {} x WHERE x.bill_id = %s")
                .format(sql.Identifier(name))
                .as_string(connection.connection),
                [bill_id],
            )
            rows, size = cursor.fetchone()
            if rows:
                parts[name] = (int(rows), int(size))
        cursor.execute(
            "SELECT count(*), coalesce(sum(pg_column_size(i.*)), 0) FROM notifications_notificationintent i"
            " WHERE i.event_key = %s",
            [f"PAYMENT_DUE:bill:{bill_id}"],
        )
        rows, size = cursor.fetchone()
        parts["notifications_notificationintent"] = (int(rows), int(size))
        cursor.execute(
            "SELECT count(*), coalesce(sum(pg_column_size(a.*)), 0) FROM audit_auditevent a"
            " WHERE a.target_id = %s AND a.action = 'bill.create'",
            [bill_id],
        )
        rows, size = cursor.fetchone()
        parts["audit_auditevent"] = (int(rows), int(size))

        # The baseline.
        cursor.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
            .format(sql.Identifier(SCRATCH_SCHEMA))
            .as_string(connection.connection)
        )
        cursor.execute(
            sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCRATCH_SCHEMA)).as_string(connection.connection)
        )
        cursor.execute(
            sql.SQL("CREATE TABLE {} (LIKE billing_bill INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)")
            .format(table)
            .as_string(connection.connection)
        )
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name = 'billing_bill' ORDER BY ordinal_position"
        )
        columns = [name for (name,) in cursor.fetchall()]
        values: list[sql.Composable] = []
        for name in columns:
            if name == "id":
                values.append(sql.SQL("gen_random_uuid()"))
            elif name == "user_id":
                values.append(sql.SQL("m.user_id"))
            elif name == "reference":
                values.append(sql.SQL("b.reference || '-' || row_number() OVER (ORDER BY m.joined_at, m.id)"))
            else:
                values.append(sql.SQL("b.{}").format(sql.Identifier(name)))
        insert = (
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM billing_bill b JOIN estates_membership m"
                " ON m.cluster_id = b.cluster_id AND m.active AND m.is_resident AND m.joined_at <= b.created_at"
                " WHERE b.id = %s"
            )
            .format(table, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(values))
            .as_string(connection.connection)
        )
        truncate = sql.SQL("TRUNCATE {}").format(table).as_string(connection.connection)
        timings = []
        for _ in range(reps):
            cursor.execute(truncate)
            started = time.perf_counter()
            cursor.execute(insert, [bill_id])  # autocommit: the INSERT and its commit
            timings.append((time.perf_counter() - started) * 1000)
            rows = cursor.rowcount
        cursor.execute(
            sql.SQL(
                "SELECT count(*), coalesce(sum(pg_column_size(x.*)), 0), pg_total_relation_size(%s),"
                " pg_relation_size(%s) FROM {} x"
            )
            .format(table)
            .as_string(connection.connection),
            [f"{SCRATCH_SCHEMA}.bill_per_resident", f"{SCRATCH_SCHEMA}.bill_per_resident"],
        )
        b_rows, b_bytes, b_total, b_heap = cursor.fetchone()
        cursor.execute(
            sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCRATCH_SCHEMA)).as_string(connection.connection)
        )
    ours_rows = sum(r for r, _ in parts.values())
    ours_bytes = sum(s for _, s in parts.values())
    return {
        "residents": int(b_rows),
        "levy": {
            "rows": ours_rows,
            "row_bytes": ours_bytes,
            "rows_by_table": {name: {"rows": r, "row_bytes": s} for name, (r, s) in parts.items()},
            "request_p50_ms": create_summary["p50_ms"] if create_summary else None,
            "request_db_ms_mean": (create_summary["db_ms_sum"] / create_summary["requests"])
            if create_summary and create_summary["requests"]
            else None,
        },
        "baseline": {
            "rows": int(b_rows),
            "inserted_per_run": rows,
            "row_bytes": int(b_bytes),
            "table_bytes": int(b_heap),
            "table_and_index_bytes": int(b_total),
            "insert_ms_runs": timings,
            "insert_ms_median": statistics.median(timings),
        },
    }


# --- the report --------------------------------------------------------------------------------


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603, S607
        return result.stdout.strip()

    import hashlib

    status = git("status", "--porcelain")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(status),
        # Tells two runs on the same commit with different uncommitted edits apart.
        "uncommitted_fingerprint": hashlib.sha256((status + git("diff", "HEAD")).encode()).hexdigest()[:12]
        if status
        else None,
    }


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
        cursor.execute("SHOW shared_buffers")
        shared_buffers = cursor.fetchone()[0]
    import redis

    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg,
        "postgresql_shared_buffers": shared_buffers,
        "redis": redis.Redis.from_url(os.environ["REDIS_URL"]).info("server").get("redis_version"),
    }


def load_other(config: Config) -> dict[str, Any] | None:
    other = "L" if config.size == "S" else "S"
    path = config.results / f"bench-{other}.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    return data


def l_over_s(config: Config, key: str, this_p95: float, other: dict[str, Any] | None) -> float | None:
    if other is None:
        return None
    other_p95 = (other.get("latency", {}).get(key) or {}).get("p95_ms")
    if not other_p95 or not this_p95:
        return None
    return float(this_p95 / other_p95 if config.size == "L" else other_p95 / this_p95)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("pass" if ok else "FAIL")


def latency_table(
    config: Config,
    latency: dict[str, dict[str, Any]],
    other: dict[str, Any] | None,
    operations: list[Operation] = OPERATIONS,
    title: str = "operation",
    judged: str = "p95_ms",
) -> list[str]:
    """One row per operation; the target and floor are judged on ``judged``: the
    client's p95 for the API (targets.md), the server's p95 (its ``Server-Timing``) for
    the pages (web.md, "Numbers")."""
    header = (
        f"{title:<44}{'p50':>8}{'p95':>8}{'p99':>8}{'srv p50':>9}{'srv p95':>9}  {'queries':>7}  {'SQL':>5}"
        f"  {'target':>6}  {'floor':>5}  {'target?':<7}  {'floor?':<6}  L/S p95"
    )
    lines = [header, "-" * len(header)]
    for op in operations:
        s = latency.get(op.key)
        if s is None:
            lines.append(f"{op.label:<44}  (not measured)")
            continue
        q_min, q_max = s["queries_min"], s["queries_max"]
        queries = "?" if q_min is None else (f"{q_min}" if q_min == q_max else f"{q_min}-{q_max}")
        share = "?" if s["sql_share"] is None else f"{s['sql_share'] * 100:.0f}%"
        target = op.target_ms[config.size]
        ratio = l_over_s(config, op.key, s["p95_ms"], other)
        ratio_text = "-" if ratio is None else f"{ratio:.2f}"
        if ratio is not None and op.key == "create_bill":
            ratio_text += f" (<= {BILL_CREATION_MAX_L_OVER_S}: {verdict(ratio <= BILL_CREATION_MAX_L_OVER_S)})"
        srv = "?" if s.get("server_app_p50_ms") is None else f"{s['server_app_p50_ms']:.1f}"
        srv95 = "?" if s.get("server_app_p95_ms") is None else f"{s['server_app_p95_ms']:.1f}"
        value = s.get(judged)
        lines.append(
            f"{op.label:<44}{s['p50_ms']:8.1f}{s['p95_ms']:8.1f}{s['p99_ms']:8.1f}{srv:>9}{srv95:>9}"
            f"  {queries:>7}  {share:>5}"
            f"  {target or '-':>6}  {op.floor_ms:>5.0f}"
            f"  {verdict(value <= target if target and value is not None else None):<7}"
            f"  {verdict(None if value is None else value <= op.floor_ms):<6}  {ratio_text}"
        )
    return lines


CPU_ROLES = ("gunicorn", "pg:web", "worker", "pg:worker", "pg:other", "redis", "client")


def cpu_table(results: dict[str, Any]) -> list[str]:
    """CPU milliseconds per request by process, for the operations that measured it:
    on this machine the latency targets leave ~2 cores x the time, shared by all."""
    rows = [(op.label, results["latency"].get(op.key)) for op in (*OPERATIONS, *PAGE_OPERATIONS, *DOCUMENT_OPERATIONS)]
    throughput = results.get("throughput")
    if throughput:
        rows.append((f"payments, throughput run ({throughput['clients']} clients)", throughput.get("latency")))
    header = f"{'CPU ms per request':<44}" + "".join(f"{role:>10}" for role in (*CPU_ROLES, "total"))
    lines = [header, "-" * len(header)]
    for label, summary in rows:
        cpu = (summary or {}).get("cpu_ms_per_request")
        if not cpu:
            continue
        lines.append(f"{label:<44}" + "".join(f"{cpu.get(role, 0.0):10.1f}" for role in (*CPU_ROLES, "total")))
    if len(lines) == 2:
        return []
    lines.append(
        "(the worker's share includes the notifications the phase caused, counted once the worker had caught up)"
    )
    return lines


def other_table(results: dict[str, Any]) -> list[str]:
    lines = []
    t = results.get("throughput")
    if t:
        lines.append(
            (
                f"payments per second ({t['clients']} clients, {t['payments_sent']:,} payments)",
                f"{t['payments_per_second']:.0f}/s",
                f">= {PAYMENTS_PER_SECOND_TARGET}/s",
                verdict(t["payments_per_second"] >= PAYMENTS_PER_SECOND_TARGET and t["errors"] == 0),
            )
        )
        cpu = (t.get("latency") or {}).get("cpu_ms_per_request")
        cpus = (results.get("machine") or {}).get("cpus") or 1
        if cpu:
            lines.append(
                (
                    "  the worker sent their notifications within",
                    f"{cpu['drain_s']:.1f} s",
                    "of the last payment",
                    "",
                )
            )
            lines.append(
                (
                    "  CPU per payment, all processes (table above)",
                    f"{cpu['total']:.1f} ms",
                    f"{cpus} CPUs: <= {cpus * 1000 / cpu['total']:.0f}/s" if cpu["total"] > 0 else "",
                    "",
                )
            )
    m = results.get("money")
    if m:
        bad = m["bill_member_pairs_paid_twice"], m["negative_balances"], m["balances_not_equal_to_ledger"]
        lines.append(
            (
                "paid twice / negative balances / balance != ledger",
                " / ".join(str(b) for b in bad),
                "0 / 0 / 0",
                verdict(not any(bad)),
            )
        )
        if t:
            lines.append(
                (
                    "throughput payments in the ledger (completed, failed)",
                    f"{m['throughput_payments_completed']:,}, {m['throughput_payments_failed']}",
                    f"{t['successful']:,}, 0",
                    verdict(
                        m["throughput_payments_completed"] == t["successful"] and m["throughput_payments_failed"] == 0
                    ),
                )
            )
    f = results.get("fanout")
    if f:
        seconds = f["seconds_until_all_stored"]
        lines.append(
            (
                f"fan-out: PAYMENT_DUE stored for {f['recipients']:,} members",
                "not all" if seconds is None else f"{seconds:.2f} s",
                f"<= {FANOUT_TARGET_SECONDS:.0f} s (50,000)",
                verdict(seconds is not None and seconds <= FANOUT_TARGET_SECONDS),
            )
        )
        lines.append(
            (
                "fan-out worker peak RSS (main + pool process)",
                f"{f['worker_peak_rss_mb']:.0f} MB",
                f"< {WORKER_PEAK_RSS_TARGET_MB:.0f} MB",
                verdict(f["worker_peak_rss_mb"] < WORKER_PEAK_RSS_TARGET_MB),
            )
        )
        lines.append(("  its largest process", f"{f['worker_peak_rss_largest_process_mb']:.0f} MB", "", ""))
        lines.append(
            (
                "  above the idle worker (peak - idle)",
                f"{f['worker_peak_rss_mb'] - f['worker_rss_idle_mb']:+.0f} MB",
                "",
                "",
            )
        )
    r = results.get("web_rss")
    if r:
        lines.append(
            (
                f"web worker RSS growth over {r['requests']:,} requests",
                f"{r['growth_mb']:+.1f} MB",
                f"< {WEB_RSS_GROWTH_TARGET_MB:.0f} MB",
                verdict(r["growth_mb"] < WEB_RSS_GROWTH_TARGET_MB and r["worker_pid_unchanged"]),
            )
        )
    e = results.get("export")
    if e:
        lines.append(
            (
                f"members export: {e['rows']:,} rows streamed ({e['expected_rows']:,} members)",
                f"{e['total_s']:.1f} s",
                "complete, one worker",
                verdict(e["complete"] and e["rows"] == e["expected_rows"] and e["same_worker"]),
            )
        )
        lines.append(("  its first byte after", f"{e['first_byte_ms']:.0f} ms", "", ""))
        lines.append(
            (
                "  the web worker's RSS before -> peak",
                f"{e['rss_before_mb']:.0f} -> {e['rss_peak_mb']:.0f} MB",
                f"+{e['rss_peak_growth_mb']:.1f} MB",
                "",
            )
        )
        lines.append(("  its spread once rows flow (flat: small)", f"{e['rss_steady_spread_mb']:.1f} MB", "", ""))
    lf = results.get("late_fees")
    if lf:
        lines.append(
            (
                f"late fees issued to {lf['fees']:,} members (one run)",
                f"{lf['issue_s']:.2f} s",
                "",
                "",
            )
        )
        lines.append(
            (
                f"  their notification stored for {lf['fanout_inbox']:,} members",
                f"{lf['fanout_s']:.2f} s",
                "",
                "",
            )
        )
    width = max((len(row[0]) for row in lines), default=40) + 2
    out = [f"{'figure':<{width}}{'value':>14}  {'target':<22}result", "-" * (width + 44)]
    out.extend(f"{a:<{width}}{b:>14}  {c:<22}{d}" for a, b, c, d in lines)
    return out


def baseline_table(b: dict[str, Any]) -> list[str]:
    ours, base = b["levy"], b["baseline"]
    tables = ", ".join(f"{name} {v['rows']}" for name, v in ours["rows_by_table"].items())
    db_ms = ours["request_db_ms_mean"]
    p50 = ours["request_p50_ms"]
    ours_time = "-" if db_ms is None else f"SQL {db_ms:.1f} ms per request (whole request p50 {p50:.1f} ms)"
    return [
        f"one estate-wide bill for {b['residents']:,} residents: one row per bill against one row per resident",
        f"  Levy      rows {ours['rows']:>7,}   row bytes {ours['row_bytes']:>12,}   {ours_time}",
        f"            ({tables})",
        f"  baseline  rows {base['rows']:>7,}   row bytes {base['row_bytes']:>12,}"
        f"   INSERT … SELECT {base['insert_ms_median']:.1f} ms (median of {len(base['insert_ms_runs'])})",
        f"            table {base['table_bytes']:,} bytes, with indexes {base['table_and_index_bytes']:,} bytes",
    ]


def print_report(config: Config, results: dict[str, Any]) -> list[str]:
    other = load_other(config)
    git = results["git"]
    edits = f" + uncommitted changes {git['uncommitted_fingerprint']}" if git["uncommitted_changes"] else ""
    lines = [
        "",
        f"Levy benchmark, data set {config.size}{' (quick)' if config.quick else ''}:"
        f" {results['dataset']['residents_in_measured_estate']:,} residents in the measured estate;"
        f" commit {git['commit'][:12]}{edits};"
        f" {results['started_at']}",
        f"gunicorn {config.workers} workers (production mode), {config.clients} client threads,"
        f" {config.warmup} warm-up + {config.requests} measured requests per operation; times in ms, client-side",
    ]
    cpus = results["machine"]["cpus"] or 1
    load_start, load_end = results["machine"]["load_average_at_start"][0], results["load_average_at_end"][0]
    busy = results["machine"]["cpu_busy_before_measuring"]
    lines.append(
        f"machine: {cpus} CPUs ({results['machine']['cpu_model']}); just before the first measured request the"
        f" CPUs were {busy:.0%} busy over 2 s with the run idle, 1-minute load average {load_start:.1f}"
        f" (set-up included); {load_end:.1f} at the end"
    )
    if busy > OTHER_WORK_BUSY:
        lines.append(
            "WARNING: other work was running on this machine when measuring began; the times may not be representative"
        )
    if other is not None:
        other_git = other.get("git", {})
        other_edits = (
            f" + uncommitted changes {other_git.get('uncommitted_fingerprint')}"
            if other_git.get("uncommitted_changes")
            else ""
        )
        lines.append(
            f"L/S: against results/bench-{other.get('size')}.json ({other.get('started_at', '?')},"
            f" commit {str(other_git.get('commit', '?'))[:12]}{other_edits})"
        )
    lines.append("")
    lines.extend(latency_table(config, results["latency"], other))
    if any(op.key in results["latency"] for op in PAGE_OPERATIONS):
        lines.append("")
        lines.extend(
            latency_table(
                config,
                results["latency"],
                other,
                [*PAGE_OPERATIONS, *DOCUMENT_OPERATIONS],
                "page (HTML) or document",
                judged="server_app_p95_ms",
            )
        )
        lines.append("(pages: target and floor judged on the server's p95, srv p95, as web.md sets them)")
    cpu_lines = cpu_table(results)
    if cpu_lines:
        lines.append("")
        lines.extend(cpu_lines)
    lines.append("")
    lines.extend(other_table(results))
    if results.get("baseline"):
        lines.append("")
        lines.extend(baseline_table(results["baseline"]))
    if results["errors"]:
        lines.append("")
        lines.append(f"ERRORS: {sum(results.get('error_counts', {}).values())} unexpected responses")
        for phase, count in results.get("error_counts", {}).items():
            lines.append(f"  {phase}: {count}")
        for e in results["errors"][:10]:
            lines.append(
                f"  {e['phase']}: {e.get('method', '')} {e.get('path', '')} -> {e['status']}"
                f" (expected {e['expected']}): {e['body'][:200]}"
            )
    lines.append("")
    lines.append(f"total wall time {results['duration_s']:.0f} s; results in {results['results_file']}")
    for line in lines:
        say(line)
    return lines


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description="Levy's benchmark (docs/performance.md).")
    parser.add_argument("--size", choices=["S", "L"], default="S", help="data set (default S)")
    parser.add_argument(
        "--quick", action="store_true", help="data set S, 200 measured requests per operation, shorter runs"
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads for the latency runs (default 4)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers, WEB_CONCURRENCY (default 3)")
    parser.add_argument("--requests", type=int, help="measured requests per operation (default 500; quick 200)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per operation (default 50; quick 20)")
    parser.add_argument("--payments", type=int, help="payments in the throughput run (S 1,500, L 3,000; quick 600)")
    parser.add_argument("--payment-clients", type=int, default=16, help="clients of the throughput run (default 16)")
    parser.add_argument("--rss-requests", type=int, help="requests of the web memory run (default 10,000; quick 2,000)")
    parser.add_argument("--port", type=int, default=8300, help="gunicorn's port; the memory run uses the next one")
    parser.add_argument("--database", help="work database, recreated each run (default levy_bench_run_<size>)")
    parser.add_argument("--template", help="template database of the data set (default levy_bench_<size>)")
    parser.add_argument("--postgres", default="postgres://root@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server URL")
    parser.add_argument("--cache-db", type=int, default=10, help="Redis database of the cache (emptied each run)")
    parser.add_argument("--broker-db", type=int, default=11, help="Redis database of the broker (emptied each run)")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="where the JSON and the logs go")
    parser.add_argument(
        "--keep-database", action="store_true", help="keep the work database after the run (dropped by default)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.size != "S":
        parser.error("--quick runs data set S only")
    if args.cache_db == args.broker_db:
        parser.error("the cache and the broker need different Redis databases")
    size = args.size
    database = args.database or f"levy_bench_run_{size.lower()}"
    template = args.template or f"levy_bench_{size}"
    if database == template:
        parser.error("the work database must differ from the template")
    if not database.startswith("levy_bench_"):
        parser.error("the work database is dropped and recreated: its name must start with levy_bench_")
    return Config(
        size=size,
        quick=args.quick,
        clients=args.clients,
        workers=args.workers,
        requests=args.requests or (200 if args.quick else 500),
        warmup=args.warmup if args.warmup is not None else (20 if args.quick else 50),
        payments=args.payments or (600 if args.quick else {"S": 1500, "L": 3000}[size]),
        payment_clients=args.payment_clients,
        rss_requests=args.rss_requests or (2000 if args.quick else 10_000),
        port=args.port,
        postgres=args.postgres.rstrip("/"),
        redis=args.redis.rstrip("/"),
        cache_db=args.cache_db,
        broker_db=args.broker_db,
        database=database,
        template=template,
        results=args.results.resolve(),
        keep_database=args.keep_database,
    )


def bench(config: Config) -> int:
    wall_started = time.perf_counter()
    started_at = utc_now()
    phases = Phases()
    logs = config.results / f"{config.result_name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()

    say(
        f"==> before starting: ports {config.port} and {config.port + 1} on 127.0.0.1, Redis databases"
        f" {config.cache_db} (cache) and {config.broker_db} (broker) at {config.redis}, emptied"
    )
    for port in (config.port, config.port + 1):
        if not port_is_free(port):
            raise BenchError(f"port {port} is in use: choose another with --port (make bench BENCH_ARGS='--port 8400')")
    flush_redis(config)
    check_disk(config)

    phases.start("database", f"data set {config.size}: {config.database} from template {config.template}")
    db_times = prepare_database(config, logs)
    say(
        f"    restored in {db_times['restore_s']:.1f} s, migrated in {db_times['migrate_s']:.1f} s,"
        f" analyzed in {db_times['analyze_s']:.1f} s"
    )

    os.environ.update(config.app_env())
    os.environ.update({"DJANGO_ENV": "development", "DJANGO_DEBUG": "0", "JWT_ACCESS_MINUTES": "600"})
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.db import connection

    flush_redis(config)
    estate = load_estate()
    results = PARTIAL
    results.update(
        {
            "size": config.size,
            "quick": config.quick,
            "started_at": started_at,
            "git": git_info(),
            "machine": machine_info(),
            "settings": config.public_settings(),
            "dataset": estate.counts,
            "database": db_times,
        }
    )

    phases.start("pairs", "choosing the (resident, bill) pairs the writes will use")
    n = count_needed(config)
    # Some spare pairs: each resident's pairs go to one run, whole.
    payable = payable_pairs(estate, n + config.payments + 100, exclude=set())
    # The first residents' pairs for the latency run, the next ones for the throughput run.
    latency_pay: dict[str, list[tuple[str, Decimal]]] = {}
    throughput_pay: dict[str, list[tuple[str, Decimal]]] = {}
    latency_left, throughput_left = n, config.payments
    for user_id, items in payable.items():
        if latency_left > 0:
            latency_pay[user_id] = items
            latency_left -= len(items)
        elif throughput_left > 0:
            throughput_pay[user_id] = items[:throughput_left]
            throughput_left -= len(throughput_pay[user_id])
    pay_pairs = interleave([[(u, b, a) for b, a in items] for u, items in latency_pay.items()])[:n]
    throughput_total = sum(len(v) for v in throughput_pay.values())
    if len(pay_pairs) < n or throughput_total < config.payments:
        raise BenchError("not enough payable pairs for the payment runs")
    ack_pairs = unacknowledged_pairs(estate, n, exclude=set(payable))
    users = {estate.admin_user_id, *estate.resident_ids[:200], *payable, *(u for u, _ in ack_pairs)}
    tokens = access_tokens(users)
    say(
        f"    {len(pay_pairs)} payments by {len(latency_pay)} residents for the latency run,"
        f" {throughput_total} by {len(throughput_pay)} residents for the throughput run,"
        f" {len(ack_pairs)} acknowledgements by {len({u for u, _ in ack_pairs})} residents"
    )
    run = Run(config=config, estate=estate, tokens=tokens, logs=logs)
    # Filled as the run goes, so that an interrupted run still leaves what it measured.
    results["latency"] = run.latency
    results["errors"] = run.errors
    results["error_counts"] = run.extra.setdefault("error_counts", {})

    phases.start(
        "servers", f"starting gunicorn ({config.workers} workers) on 127.0.0.1:{config.port} and one Celery worker"
    )
    server = start_gunicorn(config, name="gunicorn", port=config.port, workers=config.workers, logs=logs)
    worker = start_worker(config, name="worker", logs=logs)
    results["servers_started_s"] = time.perf_counter() - wall_started
    run.cpu = CpuMeter(
        web=server.pid,
        worker=worker.pid,
        postgres=find_server_pid("postgres"),
        redis=find_server_pid("redis-server"),
        pg_port=urllib.parse.urlsplit(config.postgres).port or 5432,
    )
    run.drain = outbox_drainer(worker)

    # The sign-in path once over HTTP, and the issued tokens accepted by the server.
    conn = Http(config.port)
    sign_in = Call("POST", "/api/v1/auth/token/", body={"email": ADMIN_EMAIL, "password": BENCH_PASSWORD})
    me_calls = [Call("GET", "/api/v1/me/", run.admin), Call("GET", "/api/v1/me/", run.token(pay_pairs[0][0]))]
    outcomes = [conn.send(c) for c in [sign_in, *me_calls]]
    conn.close()
    if run.check("sign-in and tokens", [sign_in, *me_calls], outcomes):
        raise BenchError(f"signing in or the issued tokens failed: {run.errors}")

    phases.start("top_up", "wallets: crediting those that cannot cover their payments (through the API, not measured)")
    credited = top_up_wallets(run, {**latency_pay, **throughput_pay})
    say(f"    {credited} wallets credited")
    # The residents whose pages are measured: 50 who owe, each with a full inbox.
    page_residents = dict(itertools.islice(((u, [b for b, _ in items]) for u, items in latency_pay.items()), 50))
    phases.start("inboxes", f"inboxes: {INBOX_SIZE} notifications for each resident whose pages are measured")
    say(f"    {fill_inboxes(run, page_residents)} notifications delivered")

    # The load when measuring begins (the set-up above is not measured): the load average
    # (which still remembers the set-up's last minute) and how busy the CPUs are over two
    # seconds while the run's own servers sit idle — anything busy then is other work.
    run.drain(time.time() - 600)
    results["machine"]["load_average_at_start"] = os.getloadavg()
    results["machine"]["cpu_busy_before_measuring"] = psutil.cpu_percent(interval=2.0) / 100
    phases.start(
        "latency",
        f"latency: {config.warmup} warm-up + {config.requests} measured requests each, {config.clients} clients",
    )
    for key, calls in read_calls(run).items():
        run.measure(key, calls)
    phases.start(
        "pages", f"pages: {config.warmup} warm-up + {config.requests} measured requests each, signed-in sessions"
    )
    cookies = web_sessions([estate.admin_user_id, *estate.resident_ids[:50], *page_residents])
    for key, calls in page_calls(run, cookies, page_residents).items():
        run.measure(key, calls)
    phases.start("latency_writes", "acknowledge and pay, then the payers' receipts")
    ack_calls = [
        Call("POST", f"{estate.base}/bills/{bill_id}/acknowledge/", run.token(user_id))
        for user_id, bill_id in ack_pairs
    ]
    run.measure("acknowledge", ack_calls)
    payments = pay_calls(run, pay_pairs, "bench-pay")
    run.measure("pay", payments)
    run.measure("receipt", receipt_calls(run, payments))

    phases.start("throughput", f"payment throughput: {config.payment_clients} clients, {throughput_total} payments")
    results["throughput"] = measure_throughput(run, throughput_pay)
    t = results["throughput"]
    say(f"    {t['successful']} payments in {t['wall_s']:.2f} s: {t['payments_per_second']:.0f}/s")
    results["money"] = verify_money()
    say(f"    money checks: {results['money']}")

    phases.start(
        "create_bill",
        "bill creation (the worker is stopped, so that 1 fan-out per bill does not compete with the requests)",
    )
    worker.stop()
    create_calls = [
        Call(
            "POST", f"{estate.management}/bills/", run.admin, body=bill_body(estate, f"Benchmark levy {i}"), expect=201
        )
        for i in range(n)
    ]
    run.measure("create_bill", create_calls)
    purged = purge_broker()
    say(f"    {purged} queued tasks discarded: those bills' fan-outs, and any notification still waiting")

    phases.start("fanout", "fan-out: a new estate-wide bill, a fresh worker")
    worker = start_worker(config, name="worker-fanout", logs=logs)
    results["fanout"] = measure_fanout(run, worker)
    f = results["fanout"]
    say(
        f"    {f['recipients']:,} notifications stored in "
        f"{'-' if f['seconds_until_all_stored'] is None else format(f['seconds_until_all_stored'], '.2f')} s;"
        f" worker peak RSS {f['worker_peak_rss_mb']:.0f} MB"
    )
    worker.stop()
    server.stop()

    phases.start("web_rss", f"web worker memory: one gunicorn worker, {config.rss_requests:,} mixed read requests")
    results["web_rss"] = measure_web_rss(run)
    say(f"    RSS growth {results['web_rss']['growth_mb']:+.1f} MB")

    phases.start("export", "the members export (one row per member), streamed from one gunicorn worker")
    results["export"] = measure_export(run)
    e = results["export"]
    say(
        f"    {e['rows']:,} rows in {e['total_s']:.2f} s (first byte {e['first_byte_ms']:.0f} ms);"
        f" worker RSS {e['rss_before_mb']:.0f} -> peak {e['rss_peak_mb']:.0f} MB"
    )

    phases.start("baseline", "one row per bill against one row per resident")
    results["baseline"] = measure_baseline(run, f["bill_id"], run.latency.get("create_bill"))

    phases.start("late_fees", "late fees: a new estate-wide bill's fees to every resident, then their fan-out")
    results["late_fees"] = measure_late_fees(run)
    lf = results["late_fees"]
    say(f"    {lf['fees']:,} late fees issued in {lf['issue_s']:.2f} s; fan-out {lf['fanout_s']:.2f} s")
    purge_broker()  # the late-fee bill's own fan-out, never run
    connection.close()

    phases.end()
    results["phase_seconds"] = phases.seconds
    results["load_average_at_end"] = os.getloadavg()
    results["duration_s"] = time.perf_counter() - wall_started
    results["finished_at"] = utc_now()
    path = config.results / f"{config.result_name}.json"
    results["results_file"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    results["report"] = print_report(config, results)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    money_ok = results["money"]["bill_member_pairs_paid_twice"] == 0 and not any(
        results["money"][k] for k in ("negative_balances", "balances_not_equal_to_ledger")
    )
    if run.errors or not money_ok:
        say("BENCHMARK FAILED: unexpected responses or broken money invariants (above)")
        return 1
    return 0


def utc_now() -> str:
    # UTC, not local time: Django's set-up changes the process's time zone to the settings'
    # TIME_ZONE half-way through the run.
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"]:
        parser = argparse.ArgumentParser(description="S against L from results/bench-S.json and bench-L.json.")
        parser.add_argument("--compare", action="store_true", required=True)
        parser.add_argument("--results", type=Path, default=ROOT / "results")
        args = parser.parse_args(argv)
        return compare_files(
            args.results.resolve(),
            {op.key: op.label for op in (*OPERATIONS, *PAGE_OPERATIONS, *DOCUMENT_OPERATIONS)},
        )
    config = parse_args(argv)
    config.results.mkdir(parents=True, exist_ok=True)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    reason = None
    try:
        return bench(config)
    except KeyboardInterrupt:
        reason = "interrupted"
        say("interrupted: stopping the servers")
        return 130
    except (BenchError, PrepError) as exc:
        reason = str(exc)
        say(f"BENCHMARK FAILED: {exc}")
        return 1
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stop_all()
        if not config.keep_database and database_exists(config, config.database):
            drop_work_database(config)
        if reason is not None and PARTIAL:
            path = config.results / f"{config.result_name}-incomplete.json"
            path.write_text(json.dumps({**PARTIAL, "incomplete": reason}, indent=2, default=str) + "\n")
            say(f"what was measured before it stopped: {path}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
