"""The bill-day load test's data helpers: the wallet top-up before the run and the money
check after it (loadtest/billday.py), on the real database."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import F
from django.utils import timezone

from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge
from levy.common.errors import InsufficientFundsError
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.selectors import ledger_balance
from loadtest.billday import bill_facts, fund_wallets, problems, successes
from tests.conftest import Estate, access, make_estate

pytestmark = pytest.mark.django_db

AMOUNT = Decimal("5000.00")


def balances(estate: Estate) -> dict[object, Decimal]:
    return {w.user_id: w.balance for w in Wallet.objects.filter(cluster=estate.cluster)}


def test_fund_tops_up_exactly_the_residents_who_cannot_pay():
    estate = make_estate(residents=4)
    poor, exact, rich, gone = estate.residents
    estate.fund(poor, "100.00")
    estate.fund(exact, "5000.00")
    estate.fund(rich, "9000.00")
    gone.active, gone.deactivated_at = False, timezone.now()
    gone.save(update_fields=["active", "deactivated_at"])
    other = make_estate(residents=1)

    credited = fund_wallets(access=access(estate.treasurer), amount=AMOUNT, idempotency_key="top-up")

    assert credited == 1
    after = balances(estate)
    assert after[poor.user_id] == Decimal("5100.00")
    assert after[exact.user_id] == Decimal("5000.00")
    assert after[rich.user_id] == Decimal("9000.00")
    assert after[gone.user_id] == Decimal("0.00")  # no longer a member
    assert after[estate.admin.user_id] == Decimal("0.00")  # staff do not live in the estate
    assert balances(other)[other.residents[0].user_id] == Decimal("0.00")  # another estate
    # Through the wallet service: a completed deposit on the ledger, initiated by the treasurer.
    top_up = Transaction.objects.get(idempotency_key="top-up")
    assert (top_up.type, top_up.status, top_up.amount) == (TransactionType.DEPOSIT, TransactionStatus.COMPLETED, AMOUNT)
    assert top_up.payer_id == poor.user_id and top_up.initiated_by_id == estate.treasurer.user_id
    assert ledger_balance(Wallet.objects.get(user=poor.user)) == Decimal("5100.00")
    # A second run finds everyone able to pay.
    assert fund_wallets(access=access(estate.treasurer), amount=AMOUNT, idempotency_key="top-up-2") == 0


def test_fund_creates_a_missing_wallet():
    estate = make_estate(residents=1)
    (resident,) = estate.residents
    Wallet.objects.filter(user=resident.user).delete()

    assert fund_wallets(access=access(estate.treasurer), amount=AMOUNT, idempotency_key="top-up") == 1
    assert Wallet.objects.get(cluster=estate.cluster, user=resident.user).balance == AMOUNT


def pay_day(estate: Estate) -> Bill:
    """A bill: the first resident acknowledges and pays, the second only acknowledges."""
    bill = estate.wide_bill(amount=Decimal("1000.00"))
    payer, acknowledger, _ = estate.residents
    estate.fund(payer, "1000.00")
    for member in (payer, acknowledger):
        bill_acknowledge(access=access(member), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key="pay-1")
    return bill


def test_check_agrees_with_the_requests_that_succeeded():
    estate = make_estate(residents=3)
    bill = pay_day(estate)

    facts = bill_facts(bill)

    assert (facts.acknowledged, facts.paid, facts.members) == (2, 1, 3)
    assert (facts.failed_payments, facts.paid_twice, facts.paid_unacknowledged) == (0, 0, 0)
    assert (facts.negative_wallets, facts.ledger_mismatches) == (0, 0)
    assert facts.seconds_to_last_payment > 0
    assert bill_facts(estate.wide_bill(title="Nobody paid")).seconds_to_last_payment == 0
    assert problems(facts, {"resident: acknowledge": 2, "resident: pay": 1}) == []
    assert problems(facts, {"resident: acknowledge": 2, "resident: pay": 2}) == [
        "1 payments stored, 2 successful payment requests"
    ]
    assert problems(facts, {"resident: pay": 1}) == ["2 acknowledgements stored, 0 acknowledged requests"]


def test_check_catches_a_balance_that_left_its_ledger():
    estate = make_estate(residents=3)
    bill = pay_day(estate)
    Wallet.objects.filter(user=estate.residents[0].user).update(balance=F("balance") + 1)

    facts = bill_facts(bill)

    assert facts.ledger_mismatches == 1
    assert problems(facts, {"resident: acknowledge": 2, "resident: pay": 1}) == [
        "1 wallets whose balance differs from their ledger"
    ]


def test_check_catches_a_failed_payment():
    estate = make_estate(residents=3)
    bill = pay_day(estate)
    broke = estate.residents[1]  # acknowledged, wallet empty
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(broke), bill=bill, idempotency_key="pay-2")

    facts = bill_facts(bill)

    assert (facts.paid, facts.failed_payments) == (1, 1)
    assert "1 failed payments" in problems(facts, {"resident: acknowledge": 2, "resident: pay": 1})


def test_successes_reads_locust_stats(tmp_path: Path):
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time\n"
        "POST,resident: pay,120,3,40\n"
        "POST,resident: acknowledge,125,0,20\n"
        ",Aggregated,245,3,30\n"
    )

    assert successes(stats) == {"resident: pay": 117, "resident: acknowledge": 125}
