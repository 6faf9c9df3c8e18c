"""Pay by card: a top-up of exactly the shortfall; the bill is paid once the top-up is
verified; if the bill cannot be paid by then, the money stays in the wallet and the
resident is told."""

from __future__ import annotations

from decimal import Decimal

import pytest

from levy.billing.services import bill_acknowledge, bill_cancel
from levy.common.errors import RuleViolation
from levy.notifications.models import Notification
from levy.payments.fake import FakeProvider
from levy.payments.models import TopUp
from levy.payments.services import bill_pay_by_card_start
from levy.wallets.models import Transaction, Wallet
from tests.conftest import Estate, access, committed, new_key
from tests.payments.conftest import connect, get_return, post_webhook

pytestmark = pytest.mark.django_db


def test_tops_up_the_shortfall_and_pays_the_bill_once(estate: Estate, fake: FakeProvider) -> None:
    account = connect(estate, fake)
    member = estate.residents[0]
    estate.fund(member, "4000.00")
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(member), bill=bill)
    key = new_key()
    top_up = bill_pay_by_card_start(access=access(member), bill=bill, idempotency_key=key)
    assert (top_up.amount, top_up.bill_id) == (Decimal("11000.00"), bill.pk)
    # The same key is the same top-up, whatever the wallet holds meanwhile.
    estate.fund(member, "1.00")
    assert bill_pay_by_card_start(access=access(member), bill=bill, idempotency_key=key).pk == top_up.pk
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)
    with committed():
        assert get_return(top_up.reference).json()["bill_outcome"] == "paid"
        assert post_webhook(account, body, headers).json()["result"] == "already_done"
    payment = Transaction.objects.get(bill=bill, payer=member.user, type="bill_payment")
    assert (payment.status, payment.amount, payment.balance_after) == (
        "completed",
        Decimal("-15000.00"),
        Decimal("1.00"),
    )
    top_up.refresh_from_db()
    assert (top_up.status, top_up.bill_outcome, top_up.bill_payment_id) == ("credited", "paid", payment.pk)
    assert Wallet.objects.get(user=member.user, cluster=estate.cluster).balance == Decimal("1.00")
    assert Notification.objects.filter(recipient=member.user, event="PAYMENT_SUCCESSFUL").count() == 1


def test_a_bill_cancelled_before_the_top_up_is_verified_leaves_the_money_in_the_wallet(
    estate: Estate, fake: FakeProvider
) -> None:
    connect(estate, fake)
    member = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(member), bill=bill)
    top_up = bill_pay_by_card_start(access=access(member), bill=bill, idempotency_key=new_key())
    assert top_up.amount == Decimal("15000.00")
    with committed():
        bill_cancel(access=access(estate.admin), bill=bill, reason="Issued twice")
    fake.pay(top_up.reference, send_webhook=False)
    with committed():
        assert get_return(top_up.reference).json() == {
            "reference": top_up.reference,
            "status": "credited",
            "amount": "15000.00",
            "currency": "NGN",
            "bill_outcome": "bill_cancelled",
        }
    assert not Transaction.objects.filter(bill=bill, type="bill_payment").exists()
    assert Wallet.objects.get(user=member.user, cluster=estate.cluster).balance == Decimal("15000.00")
    told = Notification.objects.get(recipient=member.user, event="PAYMENT_FAILED")
    assert f"(reference {top_up.reference}) is in your wallet" in told.body


def test_refused_up_front_when_the_bill_cannot_be_paid_or_the_wallet_covers_it(
    estate: Estate, fake: FakeProvider
) -> None:
    connect(estate, fake)
    member = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    with pytest.raises(RuleViolation) as raised:
        bill_pay_by_card_start(access=access(member), bill=bill, idempotency_key=new_key())
    assert raised.value.code == "bill_not_acknowledged"
    bill_acknowledge(access=access(member), bill=bill)
    estate.fund(member, "15000.00")
    with pytest.raises(RuleViolation) as raised:
        bill_pay_by_card_start(access=access(member), bill=bill, idempotency_key=new_key())
    assert raised.value.code == "wallet_covers_bill"
    assert not TopUp.objects.exists()
