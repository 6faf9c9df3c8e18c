"""A late-fee run and the bill's other writers, at once (real threads, PostgreSQL).

The run is held half-way by a lock the test takes from its own connection (a
member's row, which the fee's foreign key check must read), so the test can act while
the fees are being written.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection

from levy.billing.late_fees import late_fees_issue_due
from levy.billing.models import Bill, BillAcknowledgement
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_cancel
from tests.conftest import access, make_estate
from tests.notifications.test_worker import database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DUE = estate_today() + datetime.timedelta(days=10)
DAY = DUE + datetime.timedelta(days=4)


class Running(threading.Thread):
    """``work`` in a thread with its own database connection; ``result`` or ``error``."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


def run_is_waiting() -> bool:
    with psycopg.connect(database_url(), autocommit=True) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'WITH fees%'"
        ).fetchone()
        return bool(row and row[0])


def test_members_act_on_the_bill_while_its_fees_are_written_and_a_cancellation_waits() -> None:
    estate = make_estate(residents=3)
    acting, _, held = estate.residents
    bill = estate.wide_bill(
        due_date=DUE, late_fee_kind="fixed", late_fee_value=Decimal("500.00"), late_fee_grace_days=3
    )
    with psycopg.connect(database_url()) as blocker:
        blocker.execute("SELECT 1 FROM estates_membership WHERE id = %s FOR UPDATE", [held.pk])
        run = Running(lambda: late_fees_issue_due(DAY))
        run.start()
        wait_for(run_is_waiting, what="the run to be writing the fees")

        # A member acknowledges the bill meanwhile: not held up by the run.
        started = time.monotonic()
        acknowledge = Running(lambda: bill_acknowledge(access=access(acting), bill=bill))
        acknowledge.start()
        acknowledge.join(timeout=10)
        assert not acknowledge.is_alive() and acknowledge.error is None, acknowledge.error
        assert time.monotonic() - started < 5
        assert BillAcknowledgement.objects.filter(bill=bill, user_id=acting.user_id).exists()

        # A cancellation waits for the run, so that it cancels the fees the run wrote.
        cancel = Running(lambda: bill_cancel(access=access(estate.admin), bill=bill, reason="Issued in error"))
        cancel.start()
        time.sleep(1)
        assert cancel.is_alive()
        assert run.is_alive()
        blocker.rollback()

    run.join(timeout=30)
    cancel.join(timeout=30)
    assert (run.error, cancel.error) == (None, None)
    assert run.result == {"date": DAY.isoformat(), "bills": 1, "fees": 3}
    fees = Bill.objects.filter(late_fee_of=bill)
    assert fees.count() == 3
    assert not fees.filter(cancelled_at__isnull=True).exists()
    assert set(fees.values_list("cancellation_reason", flat=True)) == {
        f"{bill.reference} was cancelled: Issued in error"
    }


def test_two_runs_at_once_charge_once() -> None:
    estate = make_estate(residents=3)
    bill = estate.wide_bill(
        due_date=DUE, late_fee_kind="fixed", late_fee_value=Decimal("500.00"), late_fee_grace_days=3
    )
    held = estate.residents[0]
    with psycopg.connect(database_url()) as blocker:
        blocker.execute("SELECT 1 FROM estates_membership WHERE id = %s FOR UPDATE", [held.pk])
        first = Running(lambda: late_fees_issue_due(DAY))
        first.start()
        wait_for(run_is_waiting, what="the first run to be writing the fees")
        second = Running(lambda: late_fees_issue_due(DAY))
        second.start()
        second.join(timeout=10)
        assert not second.is_alive() and second.error is None, second.error
        assert second.result == {"date": DAY.isoformat(), "bills": 0, "fees": 0}  # the bill is being charged
        blocker.rollback()
    first.join(timeout=30)
    assert (first.error, first.result) == (None, {"date": DAY.isoformat(), "bills": 1, "fees": 3})
    assert Bill.objects.filter(late_fee_of=bill).count() == 3
