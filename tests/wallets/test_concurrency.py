"""Money safety under real concurrency: threads, each on its own PostgreSQL connection.

These tests commit (``transaction=True``), so every thread sees the rows the test set
up, and the database — not the test transaction — decides who wins. A
``threading.Barrier`` releases all threads at once so the calls really overlap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction

from levy.billing.counters import counters_drift
from levy.billing.models import Bill
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.selectors import live_payment
from levy.billing.services import bill_acknowledge
from levy.common.errors import InsufficientFundsError, RuleViolation
from levy.estates.models import Membership
from levy.wallets.ledger import ledger_entry
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.selectors import cluster_money_received, cluster_revenue, ledger_balance
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOIN_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The factories set a password on every user; the default PBKDF2 hasher would make
    # the set-up, not the concurrency, the slow part.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Outcome:
    result: Transaction | None = None
    error: BaseException | None = None


def run_concurrently(count: int, prepare: Callable[[int], Callable[[], Transaction]]) -> list[Outcome]:
    """Run ``count`` threads. Each calls ``prepare(i)`` on its own connection (loading its
    own model instances), waits at a barrier, then calls what ``prepare`` returned.
    Every thread closes its connection at the end."""
    barrier = threading.Barrier(count)
    outcomes = [Outcome() for _ in range(count)]

    def worker(i: int) -> None:
        try:
            call = prepare(i)
            barrier.wait(timeout=60)
            outcomes[i].result = call()
        except BaseException as exc:
            outcomes[i].error = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), name=f"payer-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    assert not any(isinstance(o.error, threading.BrokenBarrierError) for o in outcomes), "the barrier broke"
    return outcomes


def pay_call(membership_pk: Any, bill_pk: Any, key: str) -> Callable[[], Transaction]:
    """Load the payer's access and the bill on the calling thread's own connection."""
    membership = Membership.objects.select_related("user").get(pk=membership_pk)
    payer_access = access(membership)
    bill = Bill.objects.select_related("cluster").get(pk=bill_pk)
    return lambda: bill_pay(access=payer_access, bill=bill, idempotency_key=key)


def wallet_of(membership: Membership) -> Wallet:
    return Wallet.objects.get(cluster_id=membership.cluster_id, user_id=membership.user_id)


def assert_estate_books_balance(estate: Estate) -> None:
    wallets = list(Wallet.objects.filter(cluster=estate.cluster))
    for wallet in wallets:
        assert wallet.balance == ledger_balance(wallet)
        assert wallet.balance >= 0
    total = sum((w.balance for w in wallets), Decimal("0.00"))
    assert total + cluster_revenue(estate.cluster) == cluster_money_received(estate.cluster)


def test_same_bill_same_member_different_keys_is_paid_exactly_once() -> None:
    estate = make_estate(residents=1)
    payer = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    estate.fund(payer, "75000.00")  # enough for five payments: only the rule can stop the rest
    bill_acknowledge(access=access(payer), bill=bill)

    outcomes = run_concurrently(50, lambda i: pay_call(payer.pk, bill.pk, f"same-bill-{i}"))

    successes = [o.result for o in outcomes if o.result is not None]
    errors = [o.error for o in outcomes if o.error is not None]
    assert len(successes) == 1
    assert len(errors) == 49
    unexpected = [e for e in errors if not (isinstance(e, RuleViolation) and e.code == "bill_already_paid")]
    assert unexpected == []
    winner = successes[0]
    assert winner.amount == Decimal("-15000.00")
    assert winner.balance_after == Decimal("60000.00")

    payments = Transaction.objects.filter(bill=bill, payer=payer.user, type=TransactionType.BILL_PAYMENT)
    assert list(payments.filter(status=TransactionStatus.COMPLETED).values_list("pk", flat=True)) == [winner.pk]
    # A refusal by rule records nothing: no failed or pending rows either.
    assert payments.count() == 1

    wallet = wallet_of(payer)
    assert wallet.balance == Decimal("60000.00")
    assert ledger_balance(wallet) == Decimal("60000.00")
    assert cluster_revenue(estate.cluster) == Decimal("15000.00")
    assert_estate_books_balance(estate)


def test_one_wallet_paying_many_bills_never_goes_negative() -> None:
    estate = make_estate(residents=1)
    payer = estate.residents[0]
    payer_access = access(payer)
    bills = [estate.user_bill(payer, amount=Decimal("1000.00"), title=f"Bill {i}") for i in range(50)]
    for bill in bills:
        bill_acknowledge(access=payer_access, bill=bill)
    estate.fund(payer, "17500.00")

    outcomes = run_concurrently(50, lambda i: pay_call(payer.pk, bills[i].pk, f"many-bills-{i}"))

    succeeded = [bills[i].pk for i, o in enumerate(outcomes) if o.result is not None]
    failed = [bills[i].pk for i, o in enumerate(outcomes) if o.error is not None]
    unexpected = [o.error for o in outcomes if o.error is not None and not isinstance(o.error, InsufficientFundsError)]
    assert unexpected == []
    assert len(succeeded) == 17
    assert len(failed) == 33

    wallet = wallet_of(payer)
    assert wallet.balance == Decimal("500.00")
    assert ledger_balance(wallet) == Decimal("500.00")

    payments = Transaction.objects.filter(wallet=wallet, type=TransactionType.BILL_PAYMENT)
    completed = payments.filter(status=TransactionStatus.COMPLETED)
    failed_rows = payments.filter(status=TransactionStatus.FAILED)
    assert completed.count() == 17
    assert set(completed.values_list("bill_id", flat=True)) == set(succeeded)
    assert payments.filter(status=TransactionStatus.PENDING).count() == 0
    # Each refused payment left exactly one failed entry, for its own bill, and the
    # error names that entry.
    assert Counter(failed_rows.values_list("bill_id", flat=True)) == Counter(dict.fromkeys(failed, 1))
    failed_ids = {str(pk) for pk in failed_rows.values_list("pk", flat=True)}
    reported = {o.error.details["transaction_id"] for o in outcomes if isinstance(o.error, InsufficientFundsError)}
    assert reported == failed_ids
    assert set(failed_rows.values_list("failure_reason", flat=True)) == {"insufficient_funds"}
    assert set(failed_rows.values_list("balance_after", flat=True)) == {None}
    # The completed entries chain: their balances after are 16500.00, 15500.00, … 500.00.
    assert sorted(completed.values_list("balance_after", flat=True)) == [
        Decimal("500.00") + Decimal("1000.00") * n for n in range(17)
    ]
    assert cluster_revenue(estate.cluster) == Decimal("17000.00")
    assert_estate_books_balance(estate)


def test_concurrent_duplicate_key_moves_money_once() -> None:
    estate = make_estate(residents=1)
    payer = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("2500.00"))
    estate.fund(payer, "10000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    key = new_key("dup")

    outcomes = run_concurrently(20, lambda i: pay_call(payer.pk, bill.pk, key))

    errors = [o.error for o in outcomes if o.error is not None]
    assert errors == []
    ids = {o.result.pk for o in outcomes if o.result is not None}
    assert len(ids) == 1
    (tx_id,) = ids

    rows = Transaction.objects.filter(wallet__cluster=estate.cluster, idempotency_key=key)
    assert list(rows.values_list("pk", "status")) == [(tx_id, TransactionStatus.COMPLETED)]
    assert (
        Transaction.objects.filter(
            bill=bill, type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED
        ).count()
        == 1
    )
    wallet = wallet_of(payer)
    assert wallet.balance == Decimal("7500.00")
    assert ledger_balance(wallet) == Decimal("7500.00")

    # A later replay is the same answer too, and still moves nothing.
    again = bill_pay(access=access(payer), bill=Bill.objects.get(pk=bill.pk), idempotency_key=key)
    assert again.pk == tx_id
    assert wallet_of(payer).balance == Decimal("7500.00")
    assert_estate_books_balance(estate)


# --- paying again after a refund ---------------------------------------------------------------


def refunded_once(amount: str = "1000.00", funds: str = "50000.00") -> tuple[Estate, Membership, Bill]:
    """A resident who paid a live bill and had the payment refunded: they owe it again."""
    estate = make_estate(residents=1)
    payer = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal(amount))
    estate.fund(payer, funds)
    bill_acknowledge(access=access(payer), bill=bill)
    first = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())
    bill_payment_refund(access=access(estate.treasurer), payment=first, idempotency_key=new_key(), note="Paid twice")
    return estate, payer, bill


def live_payments(bill: Bill, payer: Membership) -> list[Any]:
    return list(Transaction.objects.filter(pk__in=live_payment(bill.pk, payer.user_id)).values_list("pk", flat=True))


def test_after_a_refund_the_bill_is_paid_again_exactly_once() -> None:
    estate, payer, bill = refunded_once()

    outcomes = run_concurrently(50, lambda i: pay_call(payer.pk, bill.pk, f"again-{i}"))

    successes = [o.result for o in outcomes if o.result is not None]
    errors = [o.error for o in outcomes if o.error is not None]
    assert len(successes) == 1
    assert [e for e in errors if not (isinstance(e, RuleViolation) and e.code == "bill_already_paid")] == []
    assert (successes[0].settlement, successes[0].balance_after) == (1, Decimal("49000.00"))
    assert live_payments(bill, payer) == [successes[0].pk]
    assert wallet_of(payer).balance == Decimal("49000.00")
    assert counters_drift(Bill.objects.filter(pk=bill.pk)) == []
    assert_estate_books_balance(estate)


def test_writers_that_skip_the_lock_and_the_rules_still_pay_once() -> None:
    """The database's own guard: twenty writers count the member's payments of the bill
    without any lock or rule and write the next settlement at once. Those that counted
    before the first one committed collide with it on the unique (bill, payer,
    settlement) constraint; those that counted after it follow a payment that no refund
    reopened, which the ledger's trigger refuses. Exactly one commits."""
    estate, payer, bill = refunded_once()
    wallet = wallet_of(payer)

    def prepare(i: int) -> Callable[[], Transaction]:
        def write() -> Transaction:
            with transaction.atomic():
                settlement = Transaction.objects.filter(
                    bill=bill, payer_id=payer.user_id, type="bill_payment", status="completed"
                ).count()
                return ledger_entry(
                    cluster=estate.cluster,
                    wallet=wallet,
                    type=TransactionType.BILL_PAYMENT,
                    amount=-bill.amount,
                    balance_after=wallet.balance,
                    payer_id=payer.user_id,
                    initiated_by=payer.user,
                    idempotency_key=f"unlocked-{i}",
                    bill=bill,
                    settlement=settlement,
                )

        return write

    outcomes = run_concurrently(20, prepare)

    written = [o.result for o in outcomes if o.result is not None]
    refused = [o.error for o in outcomes if o.error is not None]
    assert [tx.settlement for tx in written] == [1]
    assert len(refused) == 19 and all(isinstance(e, IntegrityError) for e in refused)
    guards = ("tx_one_payment_per_bill_member_settlement", "tx_one_live_payment")
    assert all(any(guard in str(e) for guard in guards) for e in refused), refused
    assert live_payments(bill, payer) == [written[0].pk]


def test_a_refund_racing_the_members_payments_leaves_at_most_one_live_payment() -> None:
    """The treasurer refunds while the member tries to pay again twenty times: payments
    before the refund commits are refused as already paid, after it one goes through."""
    estate, payer, bill = refunded_once()
    second = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())

    def prepare(i: int) -> Callable[[], Transaction]:
        if i == 0:
            treasurer = access(Membership.objects.select_related("user").get(pk=estate.treasurer.pk))
            payment = Transaction.objects.get(pk=second.pk)
            return lambda: bill_payment_refund(access=treasurer, payment=payment, idempotency_key=new_key())
        return pay_call(payer.pk, bill.pk, f"race-{i}")

    outcomes = run_concurrently(21, prepare)

    assert outcomes[0].error is None and outcomes[0].result is not None
    paid_again = [o.result for o in outcomes[1:] if o.result is not None]
    errors = [o.error for o in outcomes[1:] if o.error is not None]
    assert len(paid_again) <= 1
    assert [e for e in errors if not (isinstance(e, RuleViolation) and e.code == "bill_already_paid")] == []
    assert live_payments(bill, payer) == [tx.pk for tx in paid_again]
    assert [tx.settlement for tx in paid_again] in ([], [2])
    assert wallet_of(payer).balance == Decimal("50000.00") - Decimal("1000.00") * len(paid_again)
    assert counters_drift(Bill.objects.filter(pk=bill.pk)) == []
    assert_estate_books_balance(estate)
