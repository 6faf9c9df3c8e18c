"""Levy's Prometheus metrics: what the code counts as it works.

Every metric has labels, so no sample exists (and, in multiprocess mode, no file is
written) before the first event; this also lets a Celery worker choose where its
pool processes write before any of them counts anything (see levy.monitoring.worker).
The gauges read from PostgreSQL and Redis at scrape time are in
levy.monitoring.collectors.
"""

from __future__ import annotations

import os
from functools import partial

import psutil
from django.db import transaction
from prometheus_client import Counter, Gauge, Histogram

# 5 ms to 5 s: the latency targets (25-150 ms) fall between buckets close together.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter(
    "levy_http_requests",
    "HTTP requests answered, by method, route (the URL pattern; 'unmatched' for unknown paths) and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "levy_http_request_duration_seconds",
    "Time from the request entering Django to the response leaving it, by route.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
API_ERRORS = Counter(
    "levy_api_errors",
    "API error responses, by route and the error body's stable code.",
    ["route", "code"],
)
PAYMENT_ATTEMPTS = Counter(
    "levy_payment_attempts",
    "Bill payments from wallets, by outcome: completed; failed (insufficient funds, recorded on the ledger); "
    "refused (a rule said no; code is the error code). Counted once the outcome is committed; replays are not counted.",
    ["outcome", "code"],
)
NOTIFICATION_DELIVERIES = Counter(
    "levy_notification_deliveries",
    "Outbound notification sends (emails) by channel and outcome (sent, failed).",
    ["channel", "outcome"],
)
INTENTS_FANNED_OUT = Counter(
    "levy_notification_intents_fanned_out",
    "Notification intents fanned out into the inboxes, by event.",
    ["event"],
)
INBOX_ROWS_WRITTEN = Counter(
    "levy_notification_inbox_rows_written",
    "Inbox notifications written by fan-outs, by event.",
    ["event"],
)
CELERY_TASKS = Counter(
    "levy_celery_tasks",
    "Celery tasks finished, by task name and outcome (succeeded, failed, retried).",
    ["task", "outcome"],
)
PROCESS_RSS = Gauge(
    "levy_process_resident_memory_bytes",
    "Resident set size of each Levy process (web worker, Celery worker); with a pid label in multiprocess mode.",
    ["process"],
    multiprocess_mode="liveall",
)

PAYMENT_COMPLETED = "completed"
PAYMENT_FAILED = "failed"
PAYMENT_REFUSED = "refused"


def count_payment(outcome: str, code: str = "") -> None:
    PAYMENT_ATTEMPTS.labels(outcome=outcome, code=code).inc()


def count_payment_on_commit(outcome: str, code: str = "") -> None:
    """Count the payment when the transaction that records it commits (never if it
    rolls back)."""
    transaction.on_commit(partial(count_payment, outcome, code))


def count_deliveries(channel: str, *, sent: int, failed: int) -> None:
    if sent:
        NOTIFICATION_DELIVERIES.labels(channel=channel, outcome="sent").inc(sent)
    if failed:
        NOTIFICATION_DELIVERIES.labels(channel=channel, outcome="failed").inc(failed)


def count_fan_out(event: str, *, written: int) -> None:
    INTENTS_FANNED_OUT.labels(event=event).inc()
    if written:
        INBOX_ROWS_WRITTEN.labels(event=event).inc(written)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# (pid, descriptor of that process's /proc/<pid>/statm), reopened after a fork.
_statm: tuple[int, int] | None = None


def resident_memory() -> int:
    """This process's resident set size in bytes: /proc/self/statm where there is one
    (a few microseconds, cheap enough for every request), psutil elsewhere."""
    global _statm
    pid = os.getpid()
    try:
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return int(psutil.Process(pid).memory_info().rss)


def record_resident_memory(process: str) -> None:
    PROCESS_RSS.labels(process=process).set(resident_memory())
