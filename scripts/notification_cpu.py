"""CPU per notification in a real Celery worker, measured as process CPU time.

Wall-clock figures are worth little on a shared machine; the CPU time a process used
(user + system, from /proc through psutil) is far less sensitive to what else runs.
This script starts a throwaway ``redis-server`` as the broker and one Celery worker
(production settings, as ``make bench`` starts it), records ``--count`` payment
receipts (``PAYMENT_SUCCESSFUL`` to one resident, with its email: what a payment
causes) at ``--rate`` per second, each in its own transaction as a request would, waits
until every one is delivered and its email sent, and prints the CPU used per
notification by:

- ``recorder``: this process's thread, for the transaction and its commit hook (what
  the web request pays for the notification: the intent row and the hand-off);
- ``worker``: the Celery worker's main and pool processes;
- ``pg:worker``: the PostgreSQL sessions of the worker (named with ``PGAPPNAME``);
- ``broker``: the throwaway ``redis-server`` used as the broker.

The cache (``REDIS_URL``) is the shared Redis and is not counted.

    DATABASE_URL=postgres://…/scratch REDIS_URL=redis://127.0.0.1:6379/15 \\
        .venv/bin/python scripts/notification_cpu.py --count 1000 --rate 100 --runs 3

It writes an estate with ``--residents`` members into that database (a scratch one:
run ``manage.py migrate`` on it first).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
QUEUES = "notifications_high,notifications,levy"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


def tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="notifications per run")
    parser.add_argument("--rate", type=float, default=100.0, help="notifications recorded per second")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--worker-env", action="append", default=[], help="NAME=VALUE for the worker")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    broker_dir = Path(tempfile.mkdtemp(prefix="levy-cpu-"))
    port = free_port()
    redis_bin = shutil.which("redis-server") or "redis-server"
    broker = subprocess.Popen(  # noqa: S603 - a fixed command line
        [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=broker_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker_url = f"redis://127.0.0.1:{port}/0"
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.dummy.EmailBackend"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection, transaction

    from levy.estates.models import Cluster
    from levy.estates.permissions import Role
    from levy.notifications.events import NotificationEvents
    from levy.notifications.models import Delivery, DeliveryStatus, NotificationIntent
    from levy.notifications.recipients import Recipients
    from levy.notifications.services import notify
    from tests.factories import MembershipFactory, UserFactory

    cluster = Cluster.objects.create(name=f"CPU {uuid.uuid4().hex[:6]}", currency="NGN")
    tag = uuid.uuid4().hex[:8]

    def member(n: int, role: str = Role.RESIDENT) -> Any:
        user = UserFactory(email=f"cpu-{tag}-{n}@example.test")
        return MembershipFactory(cluster=cluster, user=user, role=role).user_id

    member(-1, Role.ADMIN)
    residents = [member(n) for n in range(args.residents)]
    app_name = f"levy-cpu-{uuid.uuid4().hex[:8]}"
    worker_env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "LEVY_PROVIDER_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "PGAPPNAME": app_name,
        # one session for the whole measurement (the fixup would close it every 1,000 tasks,
        # and a session that ends takes its CPU time with it)
        "CELERY_DB_REUSE_MAX": "1000000",
        "PYTHONUNBUFFERED": "1",
    }
    worker_env.pop("DJANGO_DEBUG", None)
    for item in args.worker_env:
        name, _, value = item.partition("=")
        worker_env[name] = value
    log = broker_dir / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "1", "-Q", QUEUES, "-l", "info"]
    command += ["--without-gossip", "--without-mingle", "-n", f"{app_name}@%h"]  # as make bench, with -l info
    with log.open("wb") as out:
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            cwd=ROOT,
            env=worker_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def worker_backends() -> list[psutil.Process]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [app_name])
            return [psutil.Process(pid) for (pid,) in cursor.fetchall()]

    def record(prefix: str, count: int) -> float:
        """Record ``count`` receipts at the rate; the recorder thread's CPU seconds."""
        used = 0.0
        started = time.monotonic()
        for n in range(count):
            due = started + n / args.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            before = time.thread_time()
            with transaction.atomic():
                notify(
                    event=NotificationEvents.PAYMENT_SUCCESSFUL,
                    cluster=cluster,
                    recipients=Recipients.users(residents[n % len(residents)]),
                    context={
                        "bill_title": "Service charge",
                        "bill_reference": "BL-000001",
                        "currency": "NGN",
                        "amount": "15000.00",
                        "transaction_reference": f"TX-{n}",
                        "wallet_balance": "1000.00",
                    },
                    event_key=f"CPU:{prefix}:{n}",
                )
            used += time.thread_time() - before
        return used

    def settle(prefix: str, count: int) -> None:
        deadline = time.monotonic() + 300
        intents = NotificationIntent.objects.filter(event_key__startswith=f"CPU:{prefix}:")
        while time.monotonic() < deadline:
            if (
                intents.filter(delivered_at__isnull=False).count() == count
                and Delivery.objects.filter(intent__in=intents, status=DeliveryStatus.SENT).count() == count
            ):
                return
            time.sleep(0.1)
        raise SystemExit(f"not delivered within 300 s; worker log {log}")

    try:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace") and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        time.sleep(1)
        warm = f"warm-{uuid.uuid4().hex[:6]}"
        record(warm, 100)
        settle(warm, 100)
        columns = ("recorder", "worker", "pg:worker", "broker")
        print(f"{'run':>4} " + " ".join(f"{c:>9}" for c in columns) + f" {'wall s':>7}  (CPU ms per notification)")
        rows: list[tuple[float, ...]] = []
        for run in range(args.runs):
            prefix = f"run-{uuid.uuid4().hex[:6]}"
            workers, backends, brokers = tree(worker.pid), worker_backends(), [psutil.Process(broker.pid)]
            start = (cpu_seconds(workers), cpu_seconds(backends), cpu_seconds(brokers))
            began = time.monotonic()
            recorder = record(prefix, args.count)
            settle(prefix, args.count)
            wall = time.monotonic() - began
            backends = backends + [p for p in worker_backends() if p.pid not in {b.pid for b in backends}]
            end = (cpu_seconds(workers), cpu_seconds(backends), cpu_seconds(brokers))
            row = (recorder, *(e - s for e, s in zip(end, start, strict=True)))
            per = tuple(1000 * value / args.count for value in row)
            rows.append(per)
            print(f"{run + 1:>4} " + " ".join(f"{value:>9.3f}" for value in per) + f" {wall:>7.1f}")
        mean = tuple(sum(col) / len(col) for col in zip(*rows, strict=True))
        print("mean " + " ".join(f"{value:>9.3f}" for value in mean))
        tasks = NotificationIntent.objects.filter(cluster=cluster).count()
        print(f"{tasks} intents in the estate; worker log {log}")
    finally:
        for process in (worker, broker):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM) if process is worker else process.terminate()
                    process.wait(timeout=15)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    process.kill()
        Delivery.objects.filter(intent__cluster=cluster).delete()
        from levy.notifications.models import Notification

        Notification.objects.filter(cluster=cluster).delete()
        NotificationIntent.objects.filter(cluster=cluster).delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
