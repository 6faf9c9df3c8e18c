"""``manage.py check_ledger``: the money invariants, checked set-based on the database."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.common.errors import InsufficientFundsError
from levy.wallets.management.commands.check_ledger import (
    BALANCE_MATCHES_LEDGER,
    MONEY_CONSERVED,
    estate_totals,
    ledger_report,
)
from levy.wallets.models import Transaction, Wallet
from levy.wallets.selectors import cluster_money_received, cluster_revenue
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def busy(estate: Estate) -> None:
    """Every kind of ledger entry: deposits, a payment, a failed payment, a refund."""
    payer, short, refunded = estate.residents
    for member, amount in ((payer, "20000.00"), (short, "1000.00"), (refunded, "15000.00")):
        estate.fund(member, amount)
    bill = estate.wide_bill()
    for member in estate.residents:
        bill_acknowledge(access=access(member), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(short), bill=bill, idempotency_key=new_key())
    other = estate.wide_bill(title="Water")
    bill_acknowledge(access=access(refunded), bill=other)
    payment = bill_pay(access=access(refunded), bill=other, idempotency_key=new_key())
    bill_cancel(access=access(estate.admin), bill=other, reason="Issued twice")
    bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key=new_key())


def run(*args: str) -> str:
    out = StringIO()
    call_command("check_ledger", *args, stdout=out)
    return out.getvalue()


def run_failing(*args: str) -> str:
    out = StringIO()
    with pytest.raises(CommandError, match=r"found \d+ violation"):
        call_command("check_ledger", *args, stdout=out)
    return out.getvalue()


def sql(statement: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def drop_constraint(table: str, name: str) -> None:
    """Drop a guard inside the test's transaction (rolled back afterwards). The deferred
    checks the fixtures left pending are run first: PostgreSQL alters no table that has
    pending trigger events."""
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def test_a_consistent_database_passes(estate: Estate, other_estate: Estate) -> None:
    busy(estate)
    busy(other_estate)
    output = run()
    wallets = Wallet.objects.count()
    entries = Transaction.objects.filter(status="completed").count()
    assert f"{wallets} wallets, 2 estates, {entries} completed ledger entries" in output
    assert output.count(": 0 violations") == 3
    assert "OK: no violations." in output
    assert Transaction.objects.filter(status="failed").exists()
    assert Transaction.objects.filter(type="refund").exists()


def test_an_empty_database_passes(db: None) -> None:
    output = run()
    assert "0 wallets, 0 estates, 0 completed ledger entries" in output
    assert "OK: no violations." in output


def test_pending_and_failed_entries_do_not_count_toward_the_balance(estate: Estate) -> None:
    busy(estate)
    wallet = Wallet.objects.get(cluster=estate.cluster, user=estate.residents[0].user)
    Transaction.objects.create(
        cluster=estate.cluster,
        wallet=wallet,
        type="deposit",
        status="pending",
        amount=Decimal("500.00"),
        payer=wallet.user,
        initiated_by=estate.treasurer.user,
        reference="TX-PENDING",
        idempotency_key="pending",
    )
    assert "OK: no violations." in run()


def test_the_estate_totals_agree_with_the_services(estate: Estate, other_estate: Estate) -> None:
    busy(estate)
    estate.fund(estate.residents[0], "123.45")
    with connection.cursor() as cursor:
        rows = {row[0]: row for row in estate_totals(cursor)}
    for cluster in (estate.cluster, other_estate.cluster):
        _, name, balances, wallets, revenue, received, entries = rows[cluster.pk]
        in_cluster = Wallet.objects.filter(cluster=cluster)
        assert name == cluster.name
        assert balances == sum((w.balance for w in in_cluster), Decimal("0.00"))
        assert wallets == in_cluster.count()
        assert revenue == cluster_revenue(cluster)
        assert received == cluster_money_received(cluster)
        assert entries == Transaction.objects.filter(cluster=cluster, status="completed").count()
    assert rows[estate.cluster.pk][4] == Decimal("15000.00")  # two payments, one refunded
    assert rows[estate.cluster.pk][5] == Decimal("36123.45")


def test_a_tampered_balance_fails_and_names_the_wallet(estate: Estate, other_estate: Estate) -> None:
    busy(estate)
    busy(other_estate)
    wallet = Wallet.objects.get(cluster=estate.cluster, user=estate.residents[0].user)
    sql("UPDATE wallets_wallet SET balance = balance + 100 WHERE id = %s", [wallet.pk])
    output = run_failing()
    assert f"{BALANCE_MATCHES_LEDGER}: 1 violation\n" in output
    assert f"wallet {wallet.pk} (estate {estate.cluster.pk}, member {wallet.user_id}): balance 5100.00" in output
    assert "completed entries sum to 5000.00" in output
    assert f"{MONEY_CONSERVED}: 1 violation\n" in output
    assert f"estate {estate.cluster.pk} ({estate.cluster.name})" in output
    assert str(other_estate.cluster.pk) not in output
    assert "OK" not in output


def test_a_negative_balance_is_reported(estate: Estate) -> None:
    busy(estate)
    wallet = Wallet.objects.get(cluster=estate.cluster, user=estate.residents[1].user)
    # The CHECK constraint refuses a negative balance: without it, the check still finds one.
    drop_constraint("wallets_wallet", "wallet_balance_not_negative")
    sql("UPDATE wallets_wallet SET balance = -5 WHERE id = %s", [wallet.pk])
    output = run_failing()
    assert "no negative balance: 1 violation\n" in output
    assert f"wallet {wallet.pk} (estate {estate.cluster.pk}, member {wallet.user_id}): balance -5.00\n" in output
    assert ledger_report().violations == 3  # also a mismatch, and the estate's totals


def test_money_that_crosses_estates_breaks_conservation(estate: Estate, other_estate: Estate) -> None:
    """Every wallet matches its own entries, but an entry booked to another estate
    than its wallet's leaves both estates' totals wrong: only the third check sees it."""
    busy(estate)
    wallet = Wallet.objects.get(cluster=estate.cluster, user=estate.residents[0].user)
    drop_constraint("wallets_transaction", "tx_wallet_in_cluster")
    Transaction.objects.create(
        cluster=other_estate.cluster,
        wallet=wallet,
        type="deposit",
        status="completed",
        amount=Decimal("700.00"),
        balance_after=wallet.balance + Decimal("700.00"),
        payer=wallet.user,
        initiated_by=estate.treasurer.user,
        reference="TX-ELSEWHERE",
        idempotency_key="elsewhere",
    )
    sql("UPDATE wallets_wallet SET balance = balance + 700 WHERE id = %s", [wallet.pk])
    output = run_failing()
    assert f"{BALANCE_MATCHES_LEDGER}: 0 violations" in output
    assert f"{MONEY_CONSERVED}: 2 violations" in output
    assert f"estate {estate.cluster.pk}" in output
    assert f"estate {other_estate.cluster.pk}" in output


def test_the_offender_list_is_capped(estate: Estate) -> None:
    busy(estate)
    sql("UPDATE wallets_wallet SET balance = balance + 1 WHERE cluster_id = %s", [estate.cluster.pk])
    wallets = Wallet.objects.filter(cluster=estate.cluster).count()
    output = run_failing("--limit", "2")
    assert f"{BALANCE_MATCHES_LEDGER}: {wallets} violations" in output
    assert output.count("completed entries sum to") == 2
    assert f"… and {wallets - 2} more" in output


def test_a_limit_below_one_is_refused(db: None) -> None:
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        call_command("check_ledger", "--limit", "0", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_non_zero_on_a_tampered_database() -> None:
    """The real command in its own process, on committed data: exit 0, then exit 1."""
    estate = make_estate()
    busy(estate)
    name = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{settings.DATABASES['default']['USER']}@"
        f"{connection.settings_dict['HOST']}:{connection.settings_dict['PORT'] or 5432}/{name}",
    }

    def check_ledger() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "check_ledger"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = check_ledger()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"Ledger check of database {name}:" in ok.stdout

    wallet = Wallet.objects.get(cluster=estate.cluster, user=estate.residents[2].user)
    sql("UPDATE wallets_wallet SET balance = balance + 1 WHERE id = %s", [wallet.pk])
    bad = check_ledger()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"wallet {wallet.pk} " in bad.stdout
    assert "The ledger check found 2 violation(s)." in bad.stderr


def test_another_database_engine_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check_ledger"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'levy.sqlite3'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "check_ledger runs on PostgreSQL; the database 'default' is sqlite." in result.stderr
