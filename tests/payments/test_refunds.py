"""Refunds through the API: a reversing entry linked to the payment, once, with a reason,
audited, and told to the payer (PAYMENT_REFUNDED); never to oneself."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from levy.audit.models import AuditEvent
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.estates.permissions import Role
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, Wallet
from tests.api.conftest import Api, api_as, assert_error, base
from tests.conftest import Estate, access, committed, make_estate, new_key


def paid_then_cancelled(estate: Estate, amount: str = "15000.00") -> tuple[Any, Transaction, Bill]:
    payer = estate.residents[0]
    estate.fund(payer, amount)
    bill = estate.wide_bill(amount=Decimal(amount))
    bill_acknowledge(access=access(payer), bill=bill)
    payment = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())
    with committed():
        bill_cancel(access=access(estate.admin), bill=bill, reason="Issued twice")
    return payer, payment, bill


def refund_url(estate: Estate, tx: Transaction) -> str:
    return f"{base(estate)}/management/transactions/{tx.pk}/refund/"


@pytest.mark.django_db
def test_refund_through_the_api_reverses_once_and_tells_the_payer(estate: Estate) -> None:
    payer, payment, bill = paid_then_cancelled(estate)
    api = api_as(estate.treasurer)
    assert_error(api.post(refund_url(estate, payment), {}, key=new_key()), 400, "validation_error", ("reason",))
    assert_error(api.post(refund_url(estate, payment), {"reason": "x"}), 400, "idempotency_key_required")
    with committed(), CaptureQueriesContext(connection) as queries:
        response = api.client.post(
            refund_url(estate, payment),
            {"reason": "Issued twice"},
            format="json",
            headers={"Idempotency-Key": "refund-1"},
        )
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
    # savepoint pair in tests): the bill and the wallet locked, the replay and
    # already-refunded checks, the balance, the entry (in its own savepoint), the
    # counter, the audit and the notification's intent; the idempotency record. The
    # notification's fan-out runs after the commit, in the worker.
    assert len(queries) == 17, "\n".join(q["sql"][:90] for q in queries)
    assert api.post(refund_url(estate, payment), {"reason": "Issued twice"}, key="refund-1").json() == body
    again = api.post(refund_url(estate, payment), {"reason": "Issued twice"}, key=new_key())
    assert_error(again, 409, "payment_already_refunded")
    assert Transaction.objects.filter(reverses=payment).count() == 1
    assert Wallet.objects.get(user=payer.user, cluster=estate.cluster).balance == Decimal("15000.00")
    told = Notification.objects.get(recipient=payer.user, event="PAYMENT_REFUNDED")
    assert told.body == (
        f"Your payment of NGN 15000.00 for {bill.reference} was refunded to your wallet: Issued twice. "
        "Wallet balance NGN 15000.00."
    )
    audit = AuditEvent.objects.get(action="payment.refund")
    assert (audit.actor_id, audit.data["reason"], audit.data["amount"]) == (
        estate.treasurer.user_id,
        "Issued twice",
        "15000.00",
    )


@pytest.mark.django_db
def test_refunds_are_refused_to_oneself_and_on_live_bills(estate: Estate) -> None:
    me = estate.add(role=Role.TREASURER, is_resident=True)
    estate.fund(me, "100.00")
    bill = estate.wide_bill(amount=Decimal("100.00"))
    bill_acknowledge(access=access(me), bill=bill)
    payment = bill_pay(access=access(me), bill=bill, idempotency_key=new_key())
    live = api_as(estate.admin).post(refund_url(estate, payment), {"reason": "Goodwill"}, key=new_key())
    assert_error(live, 409, "bill_not_cancelled")
    with committed():
        bill_cancel(access=access(estate.admin), bill=bill, reason="Issued twice")
    mine = api_as(me).post(refund_url(estate, payment), {"reason": "Mine"}, key=new_key())
    assert_error(mine, 409, "self_refund_not_allowed")
    assert not Transaction.objects.filter(type="refund").exists()
    assert api_as(estate.admin).post(refund_url(estate, payment), {"reason": "Ok"}, key=new_key()).status_code == 201


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_refunds_move_money_once(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    estate = make_estate(residents=1)
    payer, payment, _ = paid_then_cancelled(estate, "2500.00")
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def refund(i: int) -> None:
        try:
            api = Api(estate.treasurer.user if i % 2 else estate.admin.user)
            barrier.wait(timeout=60)
            response = api.client.post(
                refund_url(estate, payment), {"reason": "dup"}, format="json", headers={"Idempotency-Key": f"r-{i}"}
            )
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [201] + [409] * 7
    assert Transaction.objects.filter(reverses=payment).count() == 1
    assert Wallet.objects.get(user=payer.user, cluster=estate.cluster).balance == Decimal("2500.00")
