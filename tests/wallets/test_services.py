"""Payments, credits, retries and refunds: the money rules of product.md."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from levy.access import access_own_transaction, access_transaction
from levy.audit.models import AuditEvent
from levy.billing.models import Bill
from levy.billing.payments import bill_pay, bill_payment_refund, transaction_retry
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.billing.status import BillStatus
from levy.common.errors import (
    IdempotencyKeyReusedError,
    InsufficientFundsError,
    NotFoundError,
    PermissionDeniedError,
    RuleViolation,
    ValidationError,
)
from levy.estates.models import Membership
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, Wallet
from levy.wallets.selectors import (
    cluster_money_received,
    cluster_revenue,
    cluster_transactions,
    ledger_balance,
    member_transactions,
)
from levy.wallets.services import wallet_credit
from tests.billing.test_services import raises_code
from tests.conftest import Estate, access, committed, new_key

pytestmark = pytest.mark.django_db


def wallet_of(member: Membership) -> Wallet:
    return Wallet.objects.get(cluster=member.cluster, user=member.user)


def acknowledged_bill(estate: Estate, member: Membership, **overrides) -> Bill:
    bill = estate.wide_bill(**overrides)
    bill_acknowledge(access=access(member), bill=bill)
    return bill


# --- paying -----------------------------------------------------------------------------


def test_payment_debits_the_wallet_links_the_bill_and_credits_revenue(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "20000.00")
    bill = acknowledged_bill(estate, member)
    with committed():
        tx = bill_pay(access=access(member), bill=bill, idempotency_key="pay-1")
    assert (tx.type, tx.status, tx.amount, tx.balance_after) == (
        "bill_payment",
        "completed",
        Decimal("-15000.00"),
        Decimal("5000.00"),
    )
    assert (tx.bill_id, tx.payer_id, tx.initiated_by_id) == (bill.pk, member.user_id, member.user_id)
    assert wallet_of(member).balance == Decimal("5000.00") == ledger_balance(wallet_of(member))
    assert cluster_revenue(estate.cluster) == Decimal("15000.00")
    assert cluster_money_received(estate.cluster) == Decimal("20000.00")
    assert bill.status_for(member.user) == BillStatus.PAID
    receipt = Notification.objects.get(event="PAYMENT_SUCCESSFUL")
    assert (receipt.recipient_id, receipt.context["wallet_balance"], receipt.context["amount"]) == (
        member.user_id,
        "5000.00",
        "15000.00",
    )
    assert AuditEvent.objects.filter(action="payment.completed", target_id=str(tx.pk)).count() == 1


def test_payment_without_acknowledgement_is_refused_and_moves_nothing(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "20000.00")
    bill = estate.wide_bill()
    with raises_code("bill_not_acknowledged"):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    assert wallet_of(member).balance == Decimal("20000.00")
    assert Transaction.objects.filter(type="bill_payment").count() == 0


def test_paying_twice_is_refused(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "40000.00")
    bill = acknowledged_bill(estate, member)
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    with raises_code("bill_already_paid"):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    assert wallet_of(member).balance == Decimal("25000.00")


def test_past_due_payment_follows_the_bills_rule(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "40000.00")
    strict = acknowledged_bill(estate, member)
    lenient = acknowledged_bill(estate, member, allow_payment_after_due=True)
    yesterday = estate_today() - datetime.timedelta(days=1)
    Bill.objects.filter(pk__in=[strict.pk, lenient.pk]).update(due_date=yesterday)
    strict.refresh_from_db()
    lenient.refresh_from_db()
    assert strict.status_for(member.user) == BillStatus.OVERDUE
    with raises_code("payment_after_due_not_allowed"):
        bill_pay(access=access(member), bill=strict, idempotency_key=new_key())
    tx = bill_pay(access=access(member), bill=lenient, idempotency_key=new_key())
    assert tx.status == "completed"
    assert wallet_of(member).balance == Decimal("25000.00")


def test_payment_on_the_due_date_is_accepted(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "15000.00")
    bill = acknowledged_bill(estate, member, due_date=estate_today())
    assert bill_pay(access=access(member), bill=bill, idempotency_key=new_key()).status == "completed"


def test_staff_cannot_pay_as_a_member_of_an_estate_they_are_not_billed_in(estate: Estate) -> None:
    bill = estate.wide_bill()
    with pytest.raises(NotFoundError):
        bill_pay(access=access(estate.treasurer), bill=bill, idempotency_key=new_key())


def test_insufficient_funds_records_a_failed_entry_and_notifies_the_payer(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "100.00")
    bill = acknowledged_bill(estate, member)
    with committed(), pytest.raises(InsufficientFundsError) as err:
        bill_pay(access=access(member), bill=bill, idempotency_key="try-1")
    failed = Transaction.objects.get(type="bill_payment")
    assert (failed.status, failed.failure_reason, failed.amount, failed.balance_after) == (
        "failed",
        "insufficient_funds",
        Decimal("-15000.00"),
        None,
    )
    assert err.value.details["transaction_id"] == str(failed.pk)
    assert wallet_of(member).balance == Decimal("100.00") == ledger_balance(wallet_of(member))
    alert = Notification.objects.get(event="PAYMENT_FAILED")
    assert (alert.recipient_id, alert.priority) == (member.user_id, "high")
    assert AuditEvent.objects.filter(action="payment.failed").count() == 1
    assert bill.status_for(member.user) == BillStatus.ACKNOWLEDGED
    # the same key again returns the same failure, without a second entry
    with pytest.raises(InsufficientFundsError) as again:
        bill_pay(access=access(member), bill=bill, idempotency_key="try-1")
    assert again.value.details["transaction_id"] == str(failed.pk)
    assert Transaction.objects.filter(type="bill_payment").count() == 1


def test_retry_after_funding_succeeds_once_and_links_the_failure(estate: Estate) -> None:
    member = estate.residents[0]
    bill = acknowledged_bill(estate, member)
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    failed = Transaction.objects.get(status="failed")
    # retrying while still short fails again, with a clear reason, and links too
    with pytest.raises(InsufficientFundsError):
        transaction_retry(access=access(member), failed=failed, idempotency_key=new_key())
    estate.fund(member, "15000.00")
    retried = transaction_retry(access=access(member), failed=failed, idempotency_key="retry-ok")
    assert (retried.status, retried.retry_of_id, retried.balance_after) == ("completed", failed.pk, Decimal("0.00"))
    assert failed.retries.count() == 2
    with raises_code("bill_already_paid"):
        transaction_retry(access=access(member), failed=failed, idempotency_key=new_key())
    with raises_code("transaction_not_retryable"):
        transaction_retry(access=access(member), failed=retried, idempotency_key=new_key())
    # replaying the successful retry returns it
    assert transaction_retry(access=access(member), failed=failed, idempotency_key="retry-ok").pk == retried.pk
    assert Transaction.objects.filter(status="completed", type="bill_payment").count() == 1


def test_only_the_payer_may_retry_or_see_their_transaction(estate: Estate, other_estate: Estate) -> None:
    member = estate.residents[0]
    bill = acknowledged_bill(estate, member)
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    failed = Transaction.objects.get(status="failed")
    assert access_own_transaction(access(member), failed.pk) == failed
    for outsider in (estate.residents[1], other_estate.residents[0]):
        with pytest.raises(NotFoundError):
            access_own_transaction(access(outsider), failed.pk)
    with pytest.raises(NotFoundError):
        transaction_retry(access=access(estate.residents[1]), failed=failed, idempotency_key=new_key())
    assert access_transaction(access(estate.auditor), failed.pk) == failed
    with pytest.raises(NotFoundError):
        access_transaction(access(other_estate.auditor), failed.pk)


# --- idempotency ----------------------------------------------------------------------------


def test_replaying_a_payment_key_returns_the_first_result_without_moving_money(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "40000.00")
    bill = acknowledged_bill(estate, member)
    with committed():
        first = bill_pay(access=access(member), bill=bill, idempotency_key="same")
        second = bill_pay(access=access(member), bill=bill, idempotency_key="same")
    assert first.pk == second.pk
    assert wallet_of(member).balance == Decimal("25000.00")
    assert Notification.objects.filter(event="PAYMENT_SUCCESSFUL").count() == 1
    other = acknowledged_bill(estate, member)
    with pytest.raises(IdempotencyKeyReusedError):
        bill_pay(access=access(member), bill=other, idempotency_key="same")
    assert wallet_of(member).balance == Decimal("25000.00")


@pytest.mark.parametrize("key", ["", "   ", None, "x" * 129, "tab\tkey"])
def test_money_movement_needs_a_valid_idempotency_key(estate: Estate, key: object) -> None:
    member = estate.residents[0]
    bill = acknowledged_bill(estate, member)
    with pytest.raises(ValidationError) as err:
        bill_pay(access=access(member), bill=bill, idempotency_key=key)  # type: ignore[arg-type]
    assert list(err.value.fields) == ["idempotency_key"]
    with pytest.raises(ValidationError):
        wallet_credit(access=access(estate.treasurer), membership=member, amount="1.00", note="", idempotency_key=key)  # type: ignore[arg-type]
    assert Transaction.objects.count() == 0


# --- crediting ------------------------------------------------------------------------------


def test_credit_records_a_deposit_once_per_key(estate: Estate) -> None:
    member = estate.residents[0]
    treasurer = access(estate.treasurer)
    tx = wallet_credit(access=treasurer, membership=member, amount="2500.50", note="cash at gate", idempotency_key="c1")
    assert (tx.type, tx.status, tx.amount, tx.balance_after, tx.note) == (
        "deposit",
        "completed",
        Decimal("2500.50"),
        Decimal("2500.50"),
        "cash at gate",
    )
    assert (tx.payer_id, tx.initiated_by_id) == (member.user_id, estate.treasurer.user_id)
    again = wallet_credit(access=treasurer, membership=member, amount="2500.50", note="cash", idempotency_key="c1")
    assert again.pk == tx.pk
    assert wallet_of(member).balance == Decimal("2500.50")
    with pytest.raises(IdempotencyKeyReusedError):
        wallet_credit(access=treasurer, membership=member, amount="99.00", note="", idempotency_key="c1")
    assert AuditEvent.objects.filter(action="wallet.credit").count() == 1


@pytest.mark.parametrize("role", ["auditor", "resident"])
def test_only_wallet_managers_credit(estate: Estate, role: str) -> None:
    actor = estate.auditor if role == "auditor" else estate.residents[1]
    with pytest.raises(PermissionDeniedError):
        wallet_credit(
            access=access(actor), membership=estate.residents[0], amount="10.00", note="", idempotency_key="k"
        )
    assert Transaction.objects.count() == 0


def test_credit_refuses_bad_amounts_inactive_members_and_other_estates(estate: Estate, other_estate: Estate) -> None:
    treasurer = access(estate.treasurer)
    member = estate.residents[0]
    for amount in ("0", "-1", "1.001", 3.5, "lots"):
        with pytest.raises(ValidationError):
            wallet_credit(access=treasurer, membership=member, amount=amount, note="", idempotency_key=new_key())
    with pytest.raises(ValidationError):
        wallet_credit(access=treasurer, membership=member, amount="1.00", note="x" * 2001, idempotency_key=new_key())
    with pytest.raises(NotFoundError):
        wallet_credit(
            access=treasurer, membership=other_estate.residents[0], amount="1.00", note="", idempotency_key=new_key()
        )
    gone = estate.add(active=False, deactivated_at=estate.cluster.created_at)
    with pytest.raises(ValidationError):
        wallet_credit(access=treasurer, membership=gone, amount="1.00", note="", idempotency_key=new_key())
    assert Transaction.objects.count() == 0


# --- refunds --------------------------------------------------------------------------------


def test_refund_of_a_cancelled_bill_reverses_the_payment_with_a_new_entry(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "15000.00")
    bill = acknowledged_bill(estate, member)
    payment = bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    bill_cancel(access=access(estate.admin), bill=bill, reason="duplicate")
    refund = bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key="r1", note="dup")
    assert (refund.type, refund.amount, refund.reverses_id, refund.bill_id, refund.balance_after) == (
        "refund",
        Decimal("15000.00"),
        payment.pk,
        bill.pk,
        Decimal("15000.00"),
    )
    # The bill was cancelled: the payment still counts as paid, and the bill stays cancelled.
    assert refund.reopens_bill is False
    bill.refresh_from_db()
    assert bill.status_for(member.user) == BillStatus.CANCELLED
    payment.refresh_from_db()
    assert (payment.status, payment.amount) == ("completed", Decimal("-15000.00"))
    assert wallet_of(member).balance == Decimal("15000.00") == ledger_balance(wallet_of(member))
    assert cluster_revenue(estate.cluster) == Decimal("0.00")
    assert bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key="r1").pk == refund.pk
    with raises_code("payment_already_refunded"):
        bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key=new_key())
    with raises_code("transaction_not_refundable"):
        bill_payment_refund(access=access(estate.treasurer), payment=refund, idempotency_key=new_key())
    with pytest.raises(PermissionDeniedError):
        bill_payment_refund(access=access(estate.auditor), payment=payment, idempotency_key=new_key())
    assert Transaction.objects.filter(type="refund").count() == 1


def test_refund_is_scoped_to_the_estate(estate: Estate, other_estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "15000.00")
    bill = acknowledged_bill(estate, member)
    payment = bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    with pytest.raises(NotFoundError):
        bill_payment_refund(access=access(other_estate.treasurer), payment=payment, idempotency_key=new_key())


# --- ledger reads -----------------------------------------------------------------------------


def test_ledger_lists_are_scoped(estate: Estate, other_estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "10.00")
    estate.fund(estate.residents[1], "20.00")
    other_estate.fund(other_estate.residents[0], "30.00")
    assert [t.amount for t in member_transactions(access(member))] == [Decimal("10.00")]
    assert sorted(t.amount for t in cluster_transactions(access(estate.auditor))) == [
        Decimal("10.00"),
        Decimal("20.00"),
    ]
    with pytest.raises(PermissionDeniedError):
        cluster_transactions(access(member))
    with pytest.raises(NotFoundError):
        member_transactions(
            access(estate.treasurer).__class__(user=estate.treasurer.user, cluster=estate.cluster, membership=None)
        )


def test_rule_violation_carries_a_stable_code() -> None:
    err = RuleViolation("x", code="bill_waived")
    assert (err.code, err.message, repr(err)) == ("bill_waived", "x", "RuleViolation(code='bill_waived', message='x')")
