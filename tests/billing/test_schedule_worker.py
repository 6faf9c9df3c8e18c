"""Recurring bills and late fees issued by real Celery: ``celery beat`` processes sending
``issue_scheduled_bills`` every second to real ``celery worker`` processes, on a
throwaway Redis and the pytest database (see tests/notifications/test_worker.py for
the fixtures and why the data must be committed).

Time cannot be moved for other processes, so "three periods went by" is played by
moving the schedule's first due date back in the database, as if it had been created
that long ago.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillSchedule
from levy.billing.payments import bill_pay
from levy.billing.schedules import add_months, period_due_date, schedule_create
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from levy.notifications.models import Notification, NotificationIntent
from tests.conftest import Estate, access, make_estate, new_key, schedule_input
from tests.notifications.test_worker import ROOT, RedisServer, Worker, database_url, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Beat(Worker):
    """One ``celery beat`` process with its own schedule and pid files; stopped as a
    worker is."""

    def sent(self, entry: str = "issue-scheduled-bills") -> int:
        text = self.log_path.read_text(errors="replace")
        return text.count(f"Scheduler: Sending due task {entry} ")


@pytest.fixture
def start_beat(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[[], Beat]]:
    beats: list[Beat] = []

    def start() -> Beat:
        n = len(beats)
        log_path = tmp_path / f"beat-{n}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": redis_server.url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "LEVY_SCHEDULE_EVERY_SECONDS": "1",
            "LEVY_LATE_FEE_EVERY_SECONDS": "1",
            "LEVY_SWEEP_EVERY_SECONDS": "3600",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "-l",
            "info",
            "-s",
            str(tmp_path / f"beat-{n}-schedule"),
            "--pidfile",
            str(tmp_path / f"beat-{n}.pid"),
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        beat = Beat(process, log_path)
        beats.append(beat)
        wait_for(lambda: process.poll() is not None or beat.sent() > 0, what="beat's first tick", log=beat.log)
        assert process.poll() is None, f"beat exited:\n{beat.log()}"
        return beat

    try:
        yield start
    finally:
        for beat in reversed(beats):
            beat.stop()


def monthly_schedule(estate: Estate, *, periods_due: int) -> BillSchedule:
    """A monthly estate-wide schedule, issued on its due date, whose first
    ``periods_due`` periods have come (the next one is due next month)."""
    schedule = schedule_create(
        access=access(estate.admin), data=schedule_input(allow_payment_after_due=True, issue_days_before=0)
    )
    return move_first_due_date(schedule, add_months(estate_today().replace(day=1), 1 - periods_due))


def move_first_due_date(schedule: BillSchedule, first: datetime.date) -> BillSchedule:
    schedule.refresh_from_db()
    BillSchedule.objects.filter(pk=schedule.pk).update(
        first_due_date=first, next_issue_on=add_months(first, schedule.next_period)
    )
    schedule.refresh_from_db()
    return schedule


def bills_by_period(schedule: BillSchedule) -> list[tuple[int, datetime.date]]:
    return list(
        Bill.objects.filter(schedule=schedule).order_by("schedule_period").values_list("schedule_period", "due_date")
    )


def expected(schedule: BillSchedule, periods: range) -> list[tuple[int, datetime.date]]:
    return [(n, period_due_date(schedule, n)) for n in periods]


def next_period(schedule: BillSchedule) -> int:
    return BillSchedule.objects.values_list("next_period", flat=True).get(pk=schedule.pk)


def assert_notified_once_each(schedule: BillSchedule) -> None:
    bills = list(Bill.objects.filter(schedule=schedule).values_list("pk", flat=True))
    keys = sorted(f"PAYMENT_DUE:bill:{pk}" for pk in bills)
    assert sorted(NotificationIntent.objects.filter(event_key__in=keys).values_list("event_key", flat=True)) == keys


def test_two_schedulers_at_once_issue_each_period_once(real_broker: RedisServer, start_worker, start_beat) -> None:
    estate = make_estate(residents=2)
    schedule = monthly_schedule(estate, periods_due=3)
    workers: list[Worker] = [start_worker(), start_worker()]
    beats = [start_beat(), start_beat()]

    wait_for(lambda: next_period(schedule) == 3, what="three periods issued", log=workers[0].log)
    # Let both schedulers tick a few more times, each run finding nothing left.
    sent = sum(beat.sent() for beat in beats)
    wait_for(lambda: min(beat.sent() for beat in beats) >= 3 and sum(b.sent() for b in beats) >= sent + 4, what="ticks")
    time.sleep(1)

    assert bills_by_period(schedule) == expected(schedule, range(3))
    assert Bill.objects.filter(cluster=estate.cluster).count() == 3
    assert_notified_once_each(schedule)
    received = sum(w.log_path.read_text().count("levy.billing.tasks.issue_scheduled_bills") for w in workers)
    print(f"\nbeats sent {sum(b.sent() for b in beats)} runs; the workers logged {received} task lines")
    assert all(beat.sent() >= 3 for beat in beats)


def test_a_scheduler_down_for_three_periods_catches_up_one_bill_per_period(
    real_broker: RedisServer, start_worker, start_beat
) -> None:
    estate = make_estate(residents=2)
    schedule = monthly_schedule(estate, periods_due=1)
    worker = start_worker()
    beat = start_beat()
    wait_for(lambda: next_period(schedule) == 1, what="the current period", log=worker.log)
    beat.stop()
    time.sleep(1.5)  # a run already sent has finished

    # Three months go by with no scheduler: played by moving the schedule and the bill
    # it issued three months into the past.
    move_first_due_date(schedule, add_months(schedule.first_due_date, -3))
    for bill in Bill.objects.filter(schedule=schedule):
        Bill.objects.filter(pk=bill.pk).update(due_date=add_months(bill.due_date, -3))
    assert bills_by_period(schedule) == expected(schedule, range(1))
    start_beat()
    wait_for(lambda: next_period(schedule) == 4, what="the three missed periods", log=worker.log)
    time.sleep(2)  # more ticks: nothing more

    assert bills_by_period(schedule) == expected(schedule, range(4))
    caught_up = Bill.objects.filter(schedule=schedule, schedule_period__gte=1).order_by("schedule_period")
    assert [b.title for b in caught_up] == [
        f"Service charge ({period_due_date(schedule, n):%B %Y})" for n in range(1, 4)
    ]
    assert_notified_once_each(schedule)


def test_a_task_killed_while_issuing_is_retried_and_issues_each_period_once(
    real_broker: RedisServer, start_worker, start_beat
) -> None:
    estate = make_estate(residents=2)
    schedule = monthly_schedule(estate, periods_due=3)
    url = database_url()
    # Hold the estate row: the first issue (it numbers the bill under that row) waits,
    # inside its transaction, with the schedule locked.
    with psycopg.connect(url) as blocker:
        blocker.execute("SELECT 1 FROM estates_cluster WHERE id = %s FOR UPDATE", [estate.cluster.pk])
        doomed = start_worker()
        start_beat()

        def waiting_on_the_estate() -> bool:
            with psycopg.connect(url, autocommit=True) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE \"estates_cluster\"%%'"
                ).fetchone()
                return bool(row and row[0])

        wait_for(waiting_on_the_estate, what="the worker to wait mid-issue", log=doomed.log)
        doomed.kill()
        blocker.rollback()
    assert not Bill.objects.filter(schedule=schedule).exists()

    fresh = start_worker()
    wait_for(lambda: next_period(schedule) == 3, what="the periods, after the crash", log=fresh.log)
    time.sleep(2)  # more ticks: nothing more

    assert bills_by_period(schedule) == expected(schedule, range(3))
    assert Bill.objects.filter(cluster=estate.cluster).count() == 3
    assert_notified_once_each(schedule)


# --- late fees -------------------------------------------------------------------------------


def test_two_schedulers_charge_each_late_fee_once_and_it_reaches_each_member_once(
    real_broker: RedisServer, start_worker, start_beat
) -> None:
    estate = make_estate(residents=4)
    payer, owing, disputer, silent = estate.residents
    bill = estate.wide_bill(late_fee_kind="fixed", late_fee_value=Decimal("1500.00"), late_fee_grace_days=2)
    estate.fund(payer, "15000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
    bill_acknowledge(access=access(owing), bill=bill)
    bill_dispute(access=access(disputer), bill=bill, reason="Not mine")
    # The grace period ended yesterday.
    Bill.objects.filter(pk=bill.pk).update(due_date=estate_today() - datetime.timedelta(days=3))

    workers = [start_worker(), start_worker()]
    beats = [start_beat(), start_beat()]
    key = f"PAYMENT_DUE:late-fees:bill:{bill.pk}"
    wait_for(
        lambda: NotificationIntent.objects.filter(event_key=key, delivered_at__isnull=False).exists(),
        what="the late fees, announced",
        log=workers[0].log,
    )
    wait_for(lambda: min(beat.sent("issue-late-fees") for beat in beats) >= 3, what="more ticks")
    time.sleep(1)

    fees = Bill.objects.filter(late_fee_of=bill)
    assert sorted(fees.values_list("user_id", "amount")) == sorted(
        [(owing.user_id, Decimal("1500.00")), (silent.user_id, Decimal("1500.00"))]
    )
    inbox = Notification.objects.filter(event_key=key)
    assert sorted(inbox.values_list("recipient_id", flat=True)) == sorted([owing.user_id, silent.user_id])
    assert AuditEvent.objects.filter(action="bill.late_fees", target_id=str(bill.pk)).count() == 1
