"""The notification fan-out end to end: a real Celery worker process, a real Redis.

Every test here starts its own throwaway ``redis-server`` on a free loopback port (so
it can be stopped to play "broker down" without touching the shared Redis on 6379)
and one or more ``celery worker`` processes pointed at the pytest database. The data
must be committed for the worker to see it, hence ``transaction=True``; the services
are called directly, so their ``on_commit`` hooks fire on the real commit. Every wait
is bounded; every process started here is stopped in the fixtures' teardown, before
the test database is flushed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from config.celery import app as celery_app
from levy.accounts.models import User
from levy.billing.payments import bill_pay
from levy.billing.services import (
    bill_acknowledge,
    bill_create_cluster_wide,
    bill_create_user_specific,
    bill_dispute,
)
from levy.common.errors import InsufficientFundsError
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.notifications.models import Delivery, DeliveryStatus, Notification, NotificationIntent
from levy.notifications.services import intents_sweep
from levy.wallets.models import Transaction, TransactionStatus
from tests.conftest import Estate, access, bill_input, make_estate, new_key
from tests.factories import password_hash

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
QUEUES = "notifications_high,notifications,levy"
DEADLINE = 60.0  # seconds: the bound on every wait in this file
LARGE_ESTATE = 2000
REDIS_SERVER = shutil.which("redis-server")


# --- waiting ---------------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], Any],
    *,
    what: str,
    timeout: float = DEADLINE,
    interval: float = 0.05,
    log: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n--- worker log (tail) ---\n{log()}" if log else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- a throwaway Redis -----------------------------------------------------------------------


class RedisServer:
    """``redis-server`` in the foreground, no persistence; stop() and start() again on
    the same port to simulate an outage."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / f"redis-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
                [
                    str(REDIS_SERVER),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        process = self.process
        wait_for(
            lambda: process.poll() is not None or self.answers(),
            what=f"redis-server on port {self.port}",
            log=lambda: tail(self.log_path),
        )
        assert process.poll() is None, f"redis-server exited:\n{tail(self.log_path)}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- a real worker ---------------------------------------------------------------------------


class Worker:
    """One ``celery worker`` process (and its pool children, in its own session)."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return tail(self.log_path)

    def wait_ready(self) -> None:
        wait_for(
            lambda: self.process.poll() is not None or " ready." in self.log_path.read_text(errors="replace"),
            what="the worker to be ready",
            log=self.log,
        )
        assert self.process.poll() is None, f"the worker exited:\n{self.log()}"

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: no warm shutdown, no requeue."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown: finish the current task
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.kill()


def database_url() -> str:
    """The pytest test database, as the worker's DATABASE_URL."""
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = quote(db["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{credentials}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    assert REDIS_SERVER, "these tests need the redis-server binary (apt-get install redis-server)"
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def real_broker(redis_server: RedisServer) -> Iterator[RedisServer]:
    """Send this process's tasks to ``redis_server`` instead of running them in-process."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)

    def forget_connections() -> None:
        # Dropped, not closed: kombu shares a pool between apps by broker URL, and a
        # closed one fails every later task ("Acquire on closed pool"), in-process too.
        celery_app.amqp._producer_pool = None
        celery_app._pool = None

    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_server.url
    forget_connections()
    try:
        yield redis_server
    finally:
        forget_connections()
        celery_app.conf.task_always_eager, celery_app.conf.broker_url = previous


@pytest.fixture
def start_worker(transactional_db: None, redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start a worker on ``redis_server`` and the test database; stopped at teardown."""
    workers: list[Worker] = []

    def start(**settings: str) -> Worker:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": redis_server.url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            QUEUES,
            "-c",
            "1",
            "--pool",
            "prefork",
            "-l",
            "info",
            "-n",
            f"levy-test-{len(workers)}-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(process, log_path)
        workers.append(worker)
        worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in reversed(workers):
            worker.stop()


# --- data ------------------------------------------------------------------------------------


def estate_with_members(count: int) -> tuple[Estate, set[Any]]:
    """An estate (admin, treasurer, auditor) plus ``count`` resident members, written
    in bulk; returns the estate and the residents' user ids."""
    estate = make_estate(residents=0)
    tag = uuid.uuid4().hex[:8]
    hashed = password_hash()
    users = [User(email=f"member{n}-{tag}@example.test", name=f"Member {n}", password=hashed) for n in range(count)]
    User.objects.bulk_create(users, batch_size=1000)
    joined = timezone.now() - datetime.timedelta(days=30)
    Membership.objects.bulk_create(
        [
            Membership(cluster=estate.cluster, user=user, role=Role.RESIDENT, is_resident=True, joined_at=joined)
            for user in users
        ],
        batch_size=1000,
    )
    return estate, {user.pk for user in users}


def inbox(event_key: str) -> Any:
    return Notification.objects.filter(event_key=event_key)


def delivered(intent: NotificationIntent) -> bool:
    return NotificationIntent.objects.filter(pk=intent.pk, delivered_at__isnull=False).exists()


def emails_settled(intent: NotificationIntent) -> bool:
    """Every delivery of the intent exists and none is waiting or being sent."""
    deliveries = Delivery.objects.filter(intent=intent)
    expected = inbox(intent.event_key).count()
    return (
        expected > 0 and deliveries.count() == expected and not deliveries.exclude(status=DeliveryStatus.SENT).exists()
    )


def assert_emailed_once(intent: NotificationIntent, count: int) -> None:
    deliveries = Delivery.objects.filter(intent=intent)
    assert deliveries.count() == count
    assert deliveries.values("notification").distinct().count() == count
    assert list(deliveries.values_list("status", "attempts").distinct()) == [(DeliveryStatus.SENT, 1)]


# --- the tests -------------------------------------------------------------------------------


def test_an_estate_wide_bill_reaches_every_member_once(real_broker: RedisServer, start_worker) -> None:
    estate, members = estate_with_members(LARGE_ESTATE)
    worker = start_worker()

    started = time.monotonic()
    bill = bill_create_cluster_wide(access=access(estate.admin), data=bill_input())
    returned = time.monotonic()
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}")
    assert intent.dispatched_at is not None, "the broker should have taken the intent at commit"
    wait_for(lambda: delivered(intent), what="the fan-out to 2,000 members", interval=0.02, log=worker.log)
    fanned_out = time.monotonic()
    wait_for(lambda: emails_settled(intent), what="2,000 emails", interval=0.2, log=worker.log)
    emailed = time.monotonic()

    intent.refresh_from_db()
    assert intent.delivered_at is not None
    print(
        f"\nfan-out of {LARGE_ESTATE:,} members: bill_create returned in {returned - started:.3f} s; "
        f"commit -> every inbox row written {fanned_out - returned:.3f} s (wall, polled); "
        f"created_at -> delivered_at {(intent.delivered_at - intent.created_at).total_seconds():.3f} s (database); "
        f"all emails sent after {emailed - returned:.3f} s"
    )
    rows = inbox(intent.event_key)
    assert rows.filter(event="PAYMENT_DUE").count() == LARGE_ESTATE
    assert rows.values("recipient").distinct().count() == LARGE_ESTATE
    assert set(rows.values_list("recipient_id", flat=True)) == members  # nobody outside the audience
    staff = {estate.admin.user_id, estate.treasurer.user_id, estate.auditor.user_id}
    assert not Notification.objects.filter(recipient_id__in=staff).exists()  # staff do not live there
    assert (intent.delivered_count, intent.attempts, intent.last_error) == (LARGE_ESTATE, 1, "")
    assert_emailed_once(intent, LARGE_ESTATE)


def test_each_event_reaches_exactly_its_audience(real_broker: RedisServer, start_worker) -> None:
    estate = make_estate(residents=3)
    owing, payer, disputer = estate.residents
    worker = start_worker()
    admin = access(estate.admin)

    wide = bill_create_cluster_wide(access=admin, data=bill_input())
    own = bill_create_user_specific(access=admin, user_id=owing.user_id, data=bill_input(title="Gate repair"))
    bill_acknowledge(access=access(payer), bill=wide)
    dispute = bill_dispute(access=access(disputer), bill=wide, reason="I moved out in October")
    with pytest.raises(InsufficientFundsError):  # an empty wallet
        bill_pay(access=access(payer), bill=wide, idempotency_key=new_key("pay"))
    failed = Transaction.objects.get(bill=wide, payer_id=payer.user_id, status=TransactionStatus.FAILED)

    intents = NotificationIntent.objects.filter(cluster=estate.cluster)
    wait_for(
        lambda: intents.count() == 5 and not intents.filter(delivered_at__isnull=True).exists(),
        what="five intents delivered",
        log=worker.log,
    )

    def received(event_key: str) -> list[tuple[Any, str, str]]:
        return sorted((n.recipient_id, n.event, n.priority) for n in inbox(event_key))

    managers = sorted([estate.admin.user_id, estate.treasurer.user_id])
    residents = sorted(m.user_id for m in estate.residents)
    assert received(f"PAYMENT_DUE:bill:{wide.pk}") == [(u, "PAYMENT_DUE", "normal") for u in residents]
    assert received(f"PAYMENT_DUE:bill:{own.pk}") == [(owing.user_id, "PAYMENT_DUE", "normal")]
    assert received(f"BILL_ACKNOWLEDGED:bill:{wide.pk}:member:{payer.user_id}") == [
        (u, "BILL_ACKNOWLEDGED", "normal") for u in managers
    ]
    assert received(f"BILL_DISPUTED:dispute:{dispute.pk}") == [(u, "BILL_DISPUTED", "high") for u in managers]
    assert received(f"PAYMENT_FAILED:tx:{failed.pk}") == [(payer.user_id, "PAYMENT_FAILED", "high")]
    assert Notification.objects.filter(cluster=estate.cluster).count() == 3 + 1 + 2 + 2 + 1
    assert not Notification.objects.filter(recipient_id=estate.auditor.user_id).exists()
    assert sorted(intents.values_list("event", "delivered_count", "attempts")) == [
        ("BILL_ACKNOWLEDGED", 2, 1),
        ("BILL_DISPUTED", 2, 1),
        ("PAYMENT_DUE", 1, 1),
        ("PAYMENT_DUE", 3, 1),
        ("PAYMENT_FAILED", 1, 1),
    ]


def worker_sessions(application_name: str) -> set[tuple[int, Any]]:
    """(pid, backend_start) of the PostgreSQL sessions opened under ``application_name``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        return set(cursor.fetchall())


def test_the_worker_keeps_its_database_session_from_task_to_task(real_broker: RedisServer, start_worker) -> None:
    """Celery's Django fixup closes the connection around every task unless told
    otherwise; a new session per notification cost PostgreSQL more CPU than the task.
    The worker keeps one session across tasks (DB_CONN_MAX_AGE), as a web process does."""
    estate = make_estate(residents=3)
    application_name = f"levy-test-worker-{uuid.uuid4().hex[:8]}"
    worker = start_worker(PGAPPNAME=application_name)  # libpq names the worker's sessions
    bill = bill_create_cluster_wide(access=access(estate.admin), data=bill_input())
    intents = NotificationIntent.objects.filter(cluster=estate.cluster)

    def all_delivered(count: int) -> bool:
        return intents.count() == count and not intents.filter(delivered_at__isnull=True).exists()

    wait_for(lambda: all_delivered(1), what="the bill's fan-out", log=worker.log)
    first = worker_sessions(application_name)
    assert len(first) == 1, f"one session after the first task, found {first}"
    for member in estate.residents:  # three more tasks, one after the other
        bill_acknowledge(access=access(member), bill=bill)
    wait_for(lambda: all_delivered(4), what="three acknowledgements delivered", log=worker.log)
    assert worker_sessions(application_name) == first, "the worker opened a new session for a later task"


def test_bills_created_while_the_broker_is_down_are_delivered_once(
    real_broker: RedisServer, start_worker, redis_server: RedisServer
) -> None:
    estate = make_estate(residents=3)
    residents = {m.user_id for m in estate.residents}
    worker = start_worker()
    admin = access(estate.admin)
    # the service and the worker work, and this process holds a connection to the broker
    before = bill_create_user_specific(access=admin, user_id=estate.residents[0].user_id, data=bill_input())
    first = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{before.pk}")
    wait_for(lambda: delivered(first), what="the first bill's notification", log=worker.log)

    redis_server.stop()
    # the first request of the outage finds its pooled connection dead; a later one
    # has no connection at all and tries to open one
    intents, took = [], []
    for title in ("Water", "Security"):
        started = time.monotonic()
        bill = bill_create_cluster_wide(access=admin, data=bill_input(title=title))
        took.append(time.monotonic() - started)
        intents.append(NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}"))
    print(f"\nbill_create with the broker down returned in {took[0]:.3f} s, then {took[1]:.3f} s")
    assert max(took) < 10
    for intent in intents:
        assert (intent.dispatched_at, intent.delivered_at, intent.attempts) == (None, None, 0)
        assert inbox(intent.event_key).count() == 0

    redis_server.start()  # same port: the worker reconnects by itself
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 2
    for intent in intents:
        wait_for(partial(delivered, intent), what="delivery after the broker came back", log=worker.log)
        wait_for(partial(emails_settled, intent), what="the emails after the outage", log=worker.log)

    for intent in intents:
        intent.refresh_from_db()
        rows = inbox(intent.event_key)
        assert rows.count() == 3
        assert set(rows.values_list("recipient_id", flat=True)) == residents
        assert (intent.delivered_count, intent.attempts) == (3, 1)
        assert_emailed_once(intent, 3)
    assert Notification.objects.filter(cluster=estate.cluster).count() == 1 + 3 + 3

    # the sweep again: nothing left to do, and nothing changes
    def state() -> tuple[Any, ...]:
        return (
            Notification.objects.count(),
            Delivery.objects.count(),
            sorted(NotificationIntent.objects.values_list("attempts", "delivered_at")),
        )

    snapshot = state()
    assert intents_sweep(older_than_seconds=0) == {"dispatched": 0, "deliveries_reset": 0, "deliveries_due": 0}
    time.sleep(1)  # give a (wrongly) dispatched task the time to run
    assert state() == snapshot
    for intent in intents:
        assert_emailed_once(intent, 3)


def test_a_fan_out_killed_halfway_is_completed_exactly_once(real_broker: RedisServer, start_worker, settings) -> None:
    estate, members = estate_with_members(LARGE_ESTATE)
    slow = start_worker(LEVY_FANOUT_CHUNK="100", LEVY_FANOUT_CHUNK_PAUSE_SECONDS="0.2")  # 20 chunks, ~4 s

    bill = bill_create_cluster_wide(access=access(estate.admin), data=bill_input())
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}")
    rows = inbox(intent.event_key)
    wait_for(lambda: rows.exists(), what="the first chunk", interval=0.02, log=slow.log)
    slow.kill()
    time.sleep(0.5)  # a chunk whose COMMIT was already sent may still land
    written = rows.count()
    print(f"\nworker killed after {written} of {LARGE_ESTATE} inbox rows")
    assert 0 < written < LARGE_ESTATE
    assert rows.count() == written  # nothing is writing any more
    intent.refresh_from_db()
    assert intent.delivered_at is None
    assert not Delivery.objects.filter(intent=intent).exists()

    fresh = start_worker()
    settings.LEVY_SWEEP_REDISPATCH_SECONDS = 0  # the dispatch to the dead worker counts as stale
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 1
    wait_for(lambda: delivered(intent), what="the re-dispatched fan-out", log=fresh.log)

    intent.refresh_from_db()
    assert rows.count() == LARGE_ESTATE
    assert rows.values("recipient").distinct().count() == LARGE_ESTATE
    assert set(rows.values_list("recipient_id", flat=True)) == members
    assert not rows.values("recipient").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert intent.delivered_count == LARGE_ESTATE
    assert intent.attempts >= 2  # the killed run and the one that completed
    wait_for(partial(emails_settled, intent), what="2,000 emails", interval=0.2, log=fresh.log)
    assert_emailed_once(intent, LARGE_ESTATE)


# --- intents with few recipients: many per task ------------------------------------------------


def received_by_task(worker: Worker, name: str) -> int:
    return sum(
        1
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if f"levy.notifications.tasks.{name}[" in line and "received" in line
    )


def assert_delivered_once(intents: Any, per_intent: int) -> None:
    """Each intent delivered by one claim, its inbox rows and emails once each."""
    assert sorted(set(intents.values_list("attempts", "delivered_count", "last_error"))) == [(1, per_intent, "")]
    assert not intents.filter(delivered_at__isnull=True).exists()
    rows = Notification.objects.filter(intent__in=intents)
    assert rows.count() == intents.count() * per_intent
    assert not rows.values("recipient", "event_key").annotate(n=Count("id")).filter(n__gt=1).exists()
    deliveries = Delivery.objects.filter(intent__in=intents)
    assert deliveries.count() == rows.count()
    assert list(deliveries.values_list("status", "attempts").distinct()) == [(DeliveryStatus.SENT, 1)]


def all_settled(intents: Any, count: int) -> bool:
    return (
        intents.count() == count
        and not intents.filter(delivered_at__isnull=True).exists()
        and not Delivery.objects.filter(intent__in=intents).exclude(status=DeliveryStatus.SENT).exists()
        and Delivery.objects.filter(intent__in=intents).count()
        == Notification.objects.filter(intent__in=intents).count()
    )


def test_many_small_notifications_are_delivered_by_few_tasks(real_broker: RedisServer, start_worker) -> None:
    estate = make_estate(residents=30)
    worker = start_worker(LEVY_NOTIFY_BATCH_WAIT_MS="1500")
    bill = bill_create_cluster_wide(access=access(estate.admin), data=bill_input())
    for member in estate.residents:  # 30 commits, each telling the managers
        bill_acknowledge(access=access(member), bill=bill)
    acknowledged = NotificationIntent.objects.filter(event="BILL_ACKNOWLEDGED")
    assert list(acknowledged.values_list("batched", flat=True).distinct()) == [True]
    wait_for(lambda: all_settled(acknowledged, 30), what="30 acknowledgements delivered", log=worker.log)

    assert_delivered_once(acknowledged, 2)
    managers = {estate.admin.user_id, estate.treasurer.user_id}
    assert set(Notification.objects.filter(intent__in=acknowledged).values_list("recipient_id", flat=True)) == managers
    batches = received_by_task(worker, "deliver_pending")
    print(f"\n30 acknowledgements delivered by {batches} deliver_pending task(s)")
    assert 1 <= batches <= 5  # one wake-up per 1.5 s of commits, against 30 tasks one by one
    assert received_by_task(worker, "deliver_intent") == 1  # the bill's own fan-out


def test_a_lost_wake_up_is_delivered_by_the_sweep_or_the_next_commit(
    real_broker: RedisServer, start_worker, settings
) -> None:
    from django.core.cache import cache

    from levy.notifications.services import wake_key

    estate = make_estate(residents=2)
    first, second = estate.residents
    worker = start_worker(LEVY_NOTIFY_BATCH_WAIT_MS="0")
    bill = bill_create_cluster_wide(access=access(estate.admin), data=bill_input())
    # a flag whose task was lost (a process died between the flag and the broker)
    assert cache.add(wake_key("normal"), 1, timeout=60)
    bill_acknowledge(access=access(first), bill=bill)
    lost = NotificationIntent.objects.get(event="BILL_ACKNOWLEDGED")
    assert lost.dispatched_at is not None  # as far as this commit knew, a task was coming
    time.sleep(1.5)
    assert not delivered(lost)
    assert received_by_task(worker, "deliver_pending") == 0

    settings.LEVY_SWEEP_REDISPATCH_SECONDS = 0
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 1
    wait_for(lambda: all_settled(NotificationIntent.objects.filter(pk=lost.pk), 1), what="the sweep's delivery")
    assert_delivered_once(NotificationIntent.objects.filter(pk=lost.pk), 2)

    # a flag that outlived its task expires, and the next commit wakes a worker again
    cache.set(wake_key("normal"), 1, timeout=1)
    bill_acknowledge(access=access(second), bill=bill)
    stuck = NotificationIntent.objects.filter(event="BILL_ACKNOWLEDGED").exclude(pk=lost.pk).get()
    time.sleep(1.5)  # the flag has expired; nothing delivered the intent meanwhile
    assert not delivered(stuck)
    late = bill_create_user_specific(access=access(estate.admin), user_id=second.user_id, data=bill_input())
    bill_acknowledge(access=access(second), bill=late)  # a later commit of few recipients
    acknowledged = NotificationIntent.objects.filter(event="BILL_ACKNOWLEDGED")
    wait_for(lambda: all_settled(acknowledged, 3), what="the stuck intent, with the next one", log=worker.log)
    assert_delivered_once(acknowledged.exclude(pk=lost.pk), 2)


def test_two_workers_deliver_each_small_notification_once(real_broker: RedisServer, start_worker) -> None:
    from django.db import transaction

    from levy.notifications.events import NotificationEvents
    from levy.notifications.recipients import Recipients
    from levy.notifications.services import notify
    from levy.notifications.tasks import deliver_pending

    estate = make_estate(residents=3)
    workers = [start_worker(LEVY_NOTIFY_BATCH_MAX="4", LEVY_NOTIFY_BATCH_WAIT_MS="20") for _ in range(2)]
    with transaction.atomic():  # 60 receipts in one commit: 60 commit hooks, one wake-up
        for n in range(60):
            notify(
                event=NotificationEvents.PAYMENT_SUCCESSFUL,
                cluster=estate.cluster,
                recipients=Recipients.users(estate.residents[n % 3].user_id),
                context={"bill_title": "Water", "amount": "10.00"},
                event_key=f"receipt-{n}",
            )
    for _ in range(6):  # more tasks racing for the same intents, as duplicates or the sweep would
        deliver_pending.apply_async(kwargs={"priority": "normal", "wait": False}, queue="notifications")
    receipts = NotificationIntent.objects.filter(event="PAYMENT_SUCCESSFUL")
    wait_for(lambda: all_settled(receipts, 60), what="60 receipts", log=lambda: workers[0].log() + workers[1].log())

    assert_delivered_once(receipts, 1)
    per_worker = [received_by_task(w, "deliver_pending") for w in workers]
    print(f"\ndeliver_pending tasks per worker: {per_worker}")
    assert all(count >= 1 for count in per_worker)
    assert sum(per_worker) >= 60 // 4  # every full batch of 4 woke the next task
