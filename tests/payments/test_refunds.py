"""Refunds through the API: a reversing entry linked to the payment, once, with a reason,
audited, and told to the payer (PAYMENT_REFUNDED); never to oneself. A payment of a
live bill too: the payer owes the bill again, and may pay it again."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from levy.audit.models import AuditEvent
from levy.billing.counters import counters_drift
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.selectors import BillStats, bills_with_stats
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.billing.status import BillStatus
from levy.estates.permissions import Role
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, Wallet
from tests.api.conftest import Api, api_as, assert_error, base
from tests.conftest import Estate, access, committed, make_estate, new_key


def paid(estate: Estate, amount: str = "15000.00") -> tuple[Any, Transaction, Bill]:
    payer = estate.residents[0]
    estate.fund(payer, amount)
    bill = estate.wide_bill(amount=Decimal(amount))
    bill_acknowledge(access=access(payer), bill=bill)
    payment = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())
    return payer, payment, bill


def paid_then_cancelled(estate: Estate, amount: str = "15000.00") -> tuple[Any, Transaction, Bill]:
    payer, payment, bill = paid(estate, amount)
    with committed():
        bill_cancel(access=access(estate.admin), bill=bill, reason="Issued twice")
    return payer, payment, bill


def post_refund(api: Api, payment: Transaction, reason: str, key: str) -> Any:
    """One refund request, outside ``Api.post``'s own commit (a test counts its queries)."""
    estate_id = payment.cluster_id
    url = f"/api/v1/clusters/{estate_id}/management/transactions/{payment.pk}/refund/"
    return api.client.post(url, {"reason": reason}, format="json", headers={"Idempotency-Key": key})


def counted(bill: Bill) -> BillStats:
    return BillStats.of(bills_with_stats(Bill.objects.filter(pk=bill.pk)).get())


def refund_url(estate: Estate, tx: Transaction) -> str:
    return f"{base(estate)}/management/transactions/{tx.pk}/refund/"


@pytest.mark.django_db
def test_refund_through_the_api_reverses_once_and_tells_the_payer(estate: Estate) -> None:
    payer, payment, bill = paid_then_cancelled(estate)
    api = api_as(estate.treasurer)
    assert_error(api.post(refund_url(estate, payment), {}, key=new_key()), 400, "validation_error", ("reason",))
    assert_error(api.post(refund_url(estate, payment), {"reason": "x"}), 400, "idempotency_key_required")
    with committed(), CaptureQueriesContext(connection) as queries:
        response = post_refund(api, payment, "Issued twice", "refund-1")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["type"], body["amount"], body["balance_after"], body["reverses_id"], body["note"]) == (
        "refund",
        "15000.00",
        "15000.00",
        str(payment.pk),
        "Issued twice",
    )
    # user, membership, the payment, the idempotency claim, then one transaction (a
    # savepoint pair in tests): the bill and the payer's membership shared, the wallet
    # locked, the replay and already-refunded checks, the balance, the entry (in its own
    # savepoint), the counter, the audit and the notification's intent; the idempotency
    # record. The notification's fan-out runs after the commit, in the worker.
    assert len(queries) == 17, "\n".join(q["sql"][:90] for q in queries)
    assert api.post(refund_url(estate, payment), {"reason": "Issued twice"}, key="refund-1").json() == body
    again = api.post(refund_url(estate, payment), {"reason": "Issued twice"}, key=new_key())
    assert_error(again, 409, "payment_already_refunded")
    assert Transaction.objects.filter(reverses=payment).count() == 1
    assert Wallet.objects.get(user=payer.user, cluster=estate.cluster).balance == Decimal("15000.00")
    told = Notification.objects.get(recipient=payer.user, event="PAYMENT_REFUNDED")
    assert told.body == (
        f"Your payment of ₦15,000.00 for {bill.reference} was refunded to your wallet: Issued twice. "
        "Wallet balance ₦15,000.00."
    )
    audit = AuditEvent.objects.get(action="payment.refund")
    assert (audit.actor_id, audit.data["reason"], audit.data["amount"]) == (
        estate.treasurer.user_id,
        "Issued twice",
        "15000.00",
    )


@pytest.mark.django_db
def test_a_live_bills_payment_is_refunded_and_the_payer_owes_the_bill_again(estate: Estate) -> None:
    payer, payment, bill = paid(estate, "4000.00")
    assert bill.status_for(payer.user) == BillStatus.PAID
    api = api_as(estate.treasurer)
    with committed(), CaptureQueriesContext(connection) as queries:
        response = post_refund(api, payment, "Paid at the gate", "r-1")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["type"], body["amount"], body["reverses_id"]) == ("refund", "4000.00", str(payment.pk))
    # As for a cancelled bill's payment, and the payer's facts of the bill (is the payer
    # in its audience, for the paid count).
    assert len(queries) == 18, "\n".join(q["sql"][:90] for q in queries)
    assert bill.status_for(payer.user) == BillStatus.ACKNOWLEDGED
    assert (counted(bill).paid, counted(bill).collected_amount, counted(bill).outstanding) == (0, Decimal("0.00"), 3)
    assert counters_drift(Bill.objects.filter(pk=bill.pk)) == []
    told = Notification.objects.get(recipient=payer.user, event="PAYMENT_REFUNDED")
    assert told.body == (
        f"Your payment of ₦4,000.00 for {bill.reference} was refunded to your wallet: Paid at the gate. "
        "Wallet balance ₦4,000.00. The bill is unpaid again: pay it when you are ready."
    )
    audit = AuditEvent.objects.get(action="payment.refund")
    assert (audit.data["reopens_bill"], audit.data["payment_id"]) == (True, str(payment.pk))
    # The member pays it again through the API: once.
    pay_url = f"{base(estate)}/bills/{bill.pk}/pay/"
    again = api_as(payer).post(pay_url, key=new_key())
    assert again.status_code == 201, again.json()
    assert_error(api_as(payer).post(pay_url, key=new_key()), 409, "bill_already_paid")
    assert bill.status_for(payer.user) == BillStatus.PAID
    assert (counted(bill).paid, counted(bill).collected_amount) == (1, Decimal("4000.00"))
    assert Wallet.objects.get(user=payer.user, cluster=estate.cluster).balance == Decimal("0.00")


@pytest.mark.django_db
def test_nobody_refunds_their_own_payment(estate: Estate) -> None:
    me = estate.add(role=Role.TREASURER, is_resident=True)
    estate.fund(me, "100.00")
    bill = estate.wide_bill(amount=Decimal("100.00"))
    bill_acknowledge(access=access(me), bill=bill)
    payment = bill_pay(access=access(me), bill=bill, idempotency_key=new_key())
    mine = api_as(me).post(refund_url(estate, payment), {"reason": "Mine"}, key=new_key())
    assert_error(mine, 409, "self_refund_not_allowed")
    assert not Transaction.objects.filter(type="refund").exists()
    assert api_as(estate.admin).post(refund_url(estate, payment), {"reason": "Ok"}, key=new_key()).status_code == 201


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_refunds_of_a_live_bills_payment_move_money_once(settings: Any) -> None:
    """Fifty requests to refund the same payment of a live bill, under fifty keys, from
    two people at once: one refund, the money once, the paid count down once."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    estate = make_estate(residents=1)
    payer, payment, bill = paid(estate, "2500.00")
    clients = [Api(estate.treasurer.user), Api(estate.admin.user)]
    barrier = threading.Barrier(50)
    answers: list[tuple[int, str]] = []

    def refund(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            response = post_refund(clients[i % 2], payment, "dup", f"r-{i}")
            answers.append((response.status_code, response.json().get("error", {}).get("code", "")))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == [(201, "")] + [(409, "payment_already_refunded")] * 49
    assert Transaction.objects.filter(reverses=payment).count() == 1
    assert Wallet.objects.get(user=payer.user, cluster=estate.cluster).balance == Decimal("2500.00")
    assert (counted(bill).paid, counted(bill).collected_amount) == (0, Decimal("0.00"))
    assert counters_drift(Bill.objects.filter(pk=bill.pk)) == []
    assert Notification.objects.filter(recipient=payer.user, event="PAYMENT_REFUNDED").count() == 1
