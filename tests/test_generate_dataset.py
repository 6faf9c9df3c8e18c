"""The benchmark data-set generator builds consistent data, deterministically."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Count

from levy.billing.models import Bill, BillAcknowledgement, BillDispute, DisputeStatus
from levy.common.management.commands.generate_dataset import STEPS
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import Role
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.selectors import ledger_balance

pytestmark = pytest.mark.django_db

MEMBERS = 60
WIDE_BILLS = 5
OTHER_ESTATES = 2
OTHER_SIZE = 10
OTHER_BILLS = 3


def generate(seed: int = 42) -> str:
    out = StringIO()
    call_command(
        "generate_dataset",
        "--size=S",
        f"--seed={seed}",
        f"--members={MEMBERS}",
        f"--wide-bills={WIDE_BILLS}",
        f"--other-estates={OTHER_ESTATES}",
        f"--other-size={OTHER_SIZE}",
        f"--other-bills={OTHER_BILLS}",
        stdout=out,
    )
    return out.getvalue()


def fingerprint() -> dict[str, Any]:
    """Row counts and a digest of every generated row's key facts."""
    facts: dict[str, Any] = {}
    queries = {
        "bills": "SELECT id::text || reference || amount || due_date || coalesce(user_id::text, '') FROM billing_bill",
        "acks": "SELECT bill_id::text || user_id::text FROM billing_billacknowledgement",
        "disputes": "SELECT bill_id::text || user_id::text FROM billing_billdispute",
        "ledger": "SELECT id::text || amount || balance_after || reference FROM wallets_transaction",
        "wallets": "SELECT id::text || balance FROM wallets_wallet",
    }
    with connection.cursor() as cursor:
        for name, query in queries.items():
            cursor.execute(f"SELECT count(*), md5(string_agg(x, ',' ORDER BY x)) FROM ({query}) AS t(x)")  # noqa: S608
            facts[name] = cursor.fetchone()
    return facts


def generate_and_fingerprint(seed: int) -> dict[str, Any]:
    with transaction.atomic():
        generate(seed)
        facts = fingerprint()
        transaction.set_rollback(True)
    return facts


def test_generated_data_keeps_every_invariant() -> None:
    output = generate()
    assert "wallets_transaction (bill payments)" in output
    assert "done in" in output
    # Every step is numbered [done/total] for the benchmark's progress bar, the last one total/total
    # (in a test's transaction: the SQL steps and the counters, no VACUUM).
    steps = [line.split("]")[0].lstrip("[") for line in output.splitlines() if line.startswith("[")]
    total = len(STEPS) + 1
    assert steps == [f"{n}/{total}" for n in range(1, total + 1)]

    measured = Cluster.objects.get(name="Measured estate")
    assert Cluster.objects.count() == 1 + OTHER_ESTATES
    residents = Membership.objects.filter(cluster=measured, role=Role.RESIDENT, is_resident=True, active=True)
    assert residents.count() == MEMBERS
    staff = set(Membership.objects.filter(cluster=measured, is_resident=False).values_list("role", flat=True))
    assert staff == {Role.ADMIN, Role.TREASURER, Role.AUDITOR}
    assert Bill.objects.filter(cluster=measured, user__isnull=True).count() == WIDE_BILLS
    assert Bill.objects.filter(cluster=measured, user__isnull=False).count() == MEMBERS // 10
    for other in Cluster.objects.exclude(pk=measured.pk):
        assert Membership.objects.filter(cluster=other, role=Role.RESIDENT).count() == OTHER_SIZE
        assert Bill.objects.filter(cluster=other, user__isnull=True).count() == OTHER_BILLS
    assert Cluster.objects.get(pk=measured.pk).bill_sequence == WIDE_BILLS + MEMBERS // 10

    # Estate-wide bills apply to every resident: they were issued after everyone joined.
    first_bill = Bill.objects.filter(cluster=measured).order_by("created_at").first()
    assert first_bill is not None
    assert not residents.filter(joined_at__gt=first_bill.created_at).exists()

    # Every wallet's balance is the sum of its completed entries, never negative.
    wallets = list(Wallet.objects.all())
    assert len(wallets) == MEMBERS + OTHER_ESTATES * OTHER_SIZE
    for wallet in wallets:
        assert wallet.balance == ledger_balance(wallet)
        assert wallet.balance >= 0
    assert not Transaction.objects.filter(balance_after__lt=0).exists()
    assert not Transaction.objects.exclude(status=TransactionStatus.COMPLETED).exists()
    assert not Transaction.objects.filter(type=TransactionType.BILL_PAYMENT, amount__gte=0).exists()

    payments = Transaction.objects.filter(type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED)
    assert not payments.values("bill", "payer").annotate(n=Count("id")).filter(n__gt=1).exists()
    for payment in payments.select_related("bill"):
        assert payment.bill is not None
        assert payment.amount == -payment.bill.amount
        assert payment.cluster_id == payment.bill.cluster_id
    acknowledged = set(BillAcknowledgement.objects.values_list("bill_id", "user_id"))
    paid = set(payments.values_list("bill_id", "payer_id"))
    assert paid <= acknowledged
    disputed = set(BillDispute.objects.filter(status=DisputeStatus.OPEN).values_list("bill_id", "user_id"))
    assert disputed <= acknowledged
    assert not disputed & paid

    # Each wallet is funded by one deposit, dated before any payment from it.
    deposits = Transaction.objects.filter(type=TransactionType.DEPOSIT)
    assert deposits.count() == len(wallets)
    for deposit in deposits:
        later = payments.filter(wallet_id=deposit.wallet_id)
        assert not later.filter(created_at__lte=deposit.created_at).exists()

    # Ratios over the (bill, member) pairs the measured estate's bills apply to.
    pairs = WIDE_BILLS * MEMBERS + MEMBERS // 10
    measured_acks = BillAcknowledgement.objects.filter(bill__cluster=measured).count()
    measured_paid = payments.filter(cluster=measured).count()
    assert 0.60 <= measured_acks / pairs <= 0.80
    assert 0.50 <= measured_paid / pairs <= 0.70
    assert BillDispute.objects.filter(cluster=measured).count() / pairs <= 0.05


def test_same_seed_same_data() -> None:
    first = generate_and_fingerprint(seed=7)
    again = generate_and_fingerprint(seed=7)
    other = generate_and_fingerprint(seed=8)
    assert first == again
    assert first["bills"][0] == other["bills"][0]
    assert first["ledger"][1] != other["ledger"][1]


def test_refuses_a_database_with_estates() -> None:
    generate()
    with pytest.raises(CommandError, match="already holds estates"):
        generate()
