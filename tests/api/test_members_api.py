"""The member (resident) endpoints of api.md over real HTTP requests.

My bills with their derived status, acknowledgement, disputes, payment from the
wallet (every refusal code, the failed payment and its retry), the wallet and its
ledger: exact status codes, field names and values, and the database afterwards.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from levy.billing.models import Bill, BillAcknowledgement, BillDispute
from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute, dispute_resolve
from levy.estates.models import Membership
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, Wallet
from tests.api.conftest import api_as, assert_error, base, make_past_due, walk
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db

MEMBER_BILL_FIELDS = {
    "id",
    "reference",
    "title",
    "category",
    "amount",
    "currency",
    "due_date",
    "allow_payment_after_due",
    "is_cluster_wide",
    "status",
    "acknowledged_at",
    "paid_at",
    "can_pay",
}
PAYMENT_FIELDS = {"transaction_id", "amount", "currency", "wallet_balance", "status"}


# --- helpers ---------------------------------------------------------------------------------


def balance(member: Membership) -> Decimal:
    return Wallet.objects.get(cluster_id=member.cluster_id, user_id=member.user_id).balance


def ledger_rows(member: Membership) -> int:
    return Transaction.objects.filter(cluster_id=member.cluster_id, payer_id=member.user_id).count()


def ack(member: Membership, bill: Bill) -> None:
    bill_acknowledge(access=access(member), bill=bill)


# --- my bills ----------------------------------------------------------------------------------


def test_my_bills_show_estate_wide_and_my_own_with_their_status(estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    service = estate.wide_bill(amount=Decimal("15000.00"), title="Service charge")
    mine = estate.user_bill(me, amount=Decimal("2500.00"), title="Water", category="water")
    estate.user_bill(neighbour, title="Not mine")
    estate.fund(me, "20000.00")
    ack(me, service)
    payment = bill_pay(access=access(me), bill=service, idempotency_key=new_key())
    response = api_as(me).get(f"{base(estate)}/bills/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    rows = body["results"]
    assert [row["id"] for row in rows] == [str(mine.pk), str(service.pk)]  # newest first
    for row in rows:
        assert set(row) >= MEMBER_BILL_FIELDS
    water, paid = rows
    assert {k: water[k] for k in MEMBER_BILL_FIELDS - {"id", "reference"}} == {
        "title": "Water",
        "category": "water",
        "amount": "2500.00",
        "currency": "NGN",
        "due_date": mine.due_date.isoformat(),
        "allow_payment_after_due": False,
        "is_cluster_wide": False,
        "status": "pending",
        "acknowledged_at": None,
        "paid_at": None,
        "can_pay": False,
    }
    assert water["reference"] == mine.reference
    assert (paid["status"], paid["can_pay"], paid["is_cluster_wide"], paid["amount"]) == (
        "paid",
        False,
        True,
        "15000.00",
    )
    acknowledgement = BillAcknowledgement.objects.get(bill=service, user=me.user)
    assert datetime.datetime.fromisoformat(paid["acknowledged_at"]) == acknowledgement.acknowledged_at
    assert datetime.datetime.fromisoformat(paid["paid_at"]) == payment.created_at


def test_each_status_and_can_pay(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "100.00")
    estate.wide_bill(title="pending")
    acknowledged = estate.wide_bill(title="acknowledged")
    ack(me, acknowledged)
    disputed = estate.wide_bill(title="disputed")
    bill_dispute(access=access(me), bill=disputed, reason="wrong")
    waived = estate.wide_bill(title="waived")
    dispute_resolve(
        access=access(estate.admin),
        dispute=bill_dispute(access=access(me), bill=waived, reason="away"),
        resolution="upheld",
        note="ok",
    )
    cancelled = estate.wide_bill(title="cancelled")
    ack(me, cancelled)
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="mistake")
    overdue = estate.wide_bill(title="overdue")
    ack(me, overdue)
    make_past_due(overdue)
    late_ok = estate.wide_bill(title="late-ok", allow_payment_after_due=True)
    ack(me, late_ok)
    make_past_due(late_ok)
    rows = {row["title"]: row for row in api_as(me).get(f"{base(estate)}/bills/").json()["results"]}
    assert {title: (row["status"], row["can_pay"]) for title, row in rows.items()} == {
        "pending": ("pending", False),
        "acknowledged": ("acknowledged", True),
        "disputed": ("disputed", False),
        "waived": ("waived", False),
        "cancelled": ("cancelled", False),
        "overdue": ("overdue", False),
        "late-ok": ("overdue", True),
    }
    assert rows["pending"]["acknowledged_at"] is None
    assert rows["overdue"]["acknowledged_at"] is not None
    assert rows["cancelled"]["acknowledged_at"] is not None


def test_my_bills_filters(estate: Estate) -> None:
    me = estate.residents[0]
    estate.wide_bill(title="A", category="security")
    b = estate.wide_bill(title="B", category="water")
    c = estate.wide_bill(title="C", category="water")
    ack(me, b)
    make_past_due(c)
    api = api_as(me)

    def titles(**params: Any) -> list[str]:
        response = api.get(f"{base(estate)}/bills/", **params)
        assert response.status_code == 200, response.json()
        return [row["title"] for row in response.json()["results"]]

    assert titles(status="acknowledged") == ["B"]
    assert titles(status="pending") == ["A"]
    assert titles(status="overdue") == ["C"]
    assert titles(status="paid") == []
    assert titles(category="water") == ["C", "B"]
    assert titles(category="water", status="acknowledged") == ["B"]
    for params, field in (({"status": "late"}, "status"), ({"category": "parking"}, "category")):
        assert_error(api.get(f"{base(estate)}/bills/", **params), 400, "validation_error", (field,))


def test_my_bills_leave_out_what_does_not_apply_to_me(estate: Estate, other_estate: Estate) -> None:
    estate.wide_bill(title="before I joined")
    newcomer = estate.add(joined_at=timezone.now())
    after = estate.wide_bill(title="after I joined")
    other_estate.wide_bill(title="another estate")
    estate.user_bill(estate.residents[0], title="a neighbour's")
    rows = api_as(newcomer).get(f"{base(estate)}/bills/").json()["results"]
    assert [row["id"] for row in rows] == [str(after.pk)]
    # Staff who do not live in the estate are not billed.
    assert api_as(estate.treasurer).get(f"{base(estate)}/bills/").json()["results"] == []


def test_bill_detail(estate: Estate, other_estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    ack(me, bill)
    response = api_as(me).get(f"{base(estate)}/bills/{bill.pk}/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) >= MEMBER_BILL_FIELDS
    assert (body["id"], body["status"], body["can_pay"], body["amount"], body["currency"]) == (
        str(bill.pk),
        "acknowledged",
        True,
        "15000.00",
        "NGN",
    )
    listed = api_as(me).get(f"{base(estate)}/bills/").json()["results"][0]
    assert {k: listed[k] for k in MEMBER_BILL_FIELDS} == {k: body[k] for k in MEMBER_BILL_FIELDS}
    theirs = estate.user_bill(neighbour)
    foreign = other_estate.wide_bill()
    for bill_id in (theirs.pk, foreign.pk, uuid.uuid4(), "not-a-uuid", "1"):
        assert_error(api_as(me).get(f"{base(estate)}/bills/{bill_id}/"), 404, "not_found")


# --- acknowledge -------------------------------------------------------------------------------


def test_acknowledge_then_repeat_is_a_no_op(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    api = api_as(me)
    path = f"{base(estate)}/bills/{bill.pk}/acknowledge/"
    first = api.post(path, HTTP_USER_AGENT="LevyApp/2.1")
    assert first.status_code == 200, first.json()
    assert set(first.json()) == {"status", "acknowledged_at"}
    assert first.json()["status"] == "acknowledged"
    row = BillAcknowledgement.objects.get(bill=bill, user=me.user)
    assert datetime.datetime.fromisoformat(first.json()["acknowledged_at"]) == row.acknowledged_at
    assert (row.ip_address, row.user_agent) == ("127.0.0.1", "LevyApp/2.1")
    managers = {estate.admin.user_id, estate.treasurer.user_id}
    told = set(Notification.objects.filter(event="BILL_ACKNOWLEDGED").values_list("recipient_id", flat=True))
    assert told == managers
    second = api.post(path)
    assert second.status_code == 200, second.json()
    assert second.json() == first.json()
    assert BillAcknowledgement.objects.filter(bill=bill).count() == 1
    assert Notification.objects.filter(event="BILL_ACKNOWLEDGED").count() == 2


def test_acknowledge_refusals(estate: Estate, other_estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    cancelled = estate.wide_bill()
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="x")
    api = api_as(me)
    assert_error(api.post(f"{base(estate)}/bills/{cancelled.pk}/acknowledge/"), 409, "bill_cancelled")
    theirs = estate.user_bill(neighbour)
    for bill_id in (theirs.pk, other_estate.wide_bill().pk, "zzz"):
        assert_error(api.post(f"{base(estate)}/bills/{bill_id}/acknowledge/"), 404, "not_found")
    assert not BillAcknowledgement.objects.exists()
    assert_error(api_as(None).post(f"{base(estate)}/bills/{theirs.pk}/acknowledge/"), 401, "not_authenticated")


def test_acknowledging_an_overdue_bill_reports_overdue(estate: Estate) -> None:
    me = estate.residents[0]
    bill = make_past_due(estate.wide_bill())
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/acknowledge/")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "overdue"


# --- dispute -----------------------------------------------------------------------------------


def test_dispute(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    api = api_as(me)
    response = api.post(f"{base(estate)}/bills/{bill.pk}/dispute/", {"reason": "  I moved out in March  "})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= {"id", "status", "reason", "created_at"}
    dispute = BillDispute.objects.get(pk=body["id"])
    assert (body["status"], body["reason"], body["bill_id"], body["user_id"]) == (
        "open",
        "I moved out in March",
        str(bill.pk),
        str(me.user_id),
    )
    assert datetime.datetime.fromisoformat(body["created_at"]) == dispute.created_at
    assert (dispute.user_id, dispute.status, dispute.cluster_id) == (me.user_id, "open", estate.cluster.pk)
    alerts = Notification.objects.filter(event="BILL_DISPUTED")
    assert set(alerts.values_list("recipient_id", flat=True)) == {estate.admin.user_id, estate.treasurer.user_id}
    assert set(alerts.values_list("priority", flat=True)) == {"high"}
    mine = api.get(f"{base(estate)}/bills/{bill.pk}/").json()
    assert (mine["status"], mine["can_pay"]) == ("disputed", False)
    again = api.post(f"{base(estate)}/bills/{bill.pk}/dispute/", {"reason": "again"})
    assert_error(again, 409, "dispute_already_open")
    assert BillDispute.objects.count() == 1


def test_dispute_again_after_a_rejection(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    first = bill_dispute(access=access(me), bill=bill, reason="first")
    dispute_resolve(access=access(estate.admin), dispute=first, resolution="rejected", note="no")
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/dispute/", {"reason": "new evidence"})
    assert response.status_code == 201, response.json()
    assert BillDispute.objects.filter(bill=bill, user=me.user).count() == 2


@pytest.mark.parametrize("payload", [{}, {"reason": ""}, {"reason": "   "}, {"reason": ["a"]}, {"reason": "r" * 5001}])
def test_dispute_validation(estate: Estate, payload: dict[str, Any]) -> None:
    bill = estate.wide_bill()
    response = api_as(estate.residents[0]).post(f"{base(estate)}/bills/{bill.pk}/dispute/", payload)
    assert_error(response, 400, "validation_error", ("reason",))
    assert not BillDispute.objects.exists()


def test_dispute_refusals(estate: Estate, other_estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    api = api_as(me)
    paid = estate.wide_bill(amount=Decimal("10.00"))
    estate.fund(me, "10.00")
    ack(me, paid)
    bill_pay(access=access(me), bill=paid, idempotency_key=new_key())
    assert_error(api.post(f"{base(estate)}/bills/{paid.pk}/dispute/", {"reason": "x"}), 409, "bill_already_paid")
    waived = estate.wide_bill()
    dispute_resolve(
        access=access(estate.admin),
        dispute=bill_dispute(access=access(me), bill=waived, reason="x"),
        resolution="upheld",
        note="ok",
    )
    assert_error(api.post(f"{base(estate)}/bills/{waived.pk}/dispute/", {"reason": "x"}), 409, "bill_waived")
    cancelled = estate.wide_bill()
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="x")
    assert_error(api.post(f"{base(estate)}/bills/{cancelled.pk}/dispute/", {"reason": "x"}), 409, "bill_cancelled")
    for bill_id in (estate.user_bill(neighbour).pk, other_estate.wide_bill().pk, "no"):
        assert_error(api.post(f"{base(estate)}/bills/{bill_id}/dispute/", {"reason": "x"}), 404, "not_found")
    assert BillDispute.objects.filter(user=me.user).count() == 1  # only the one that was upheld


# --- pay ---------------------------------------------------------------------------------------


def test_pay(db: None) -> None:
    estate = make_estate(currency="GHS")
    me = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    estate.fund(me, "20000.00")
    ack(me, bill)
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= PAYMENT_FIELDS
    tx = Transaction.objects.get(pk=body["transaction_id"])
    assert {k: body[k] for k in PAYMENT_FIELDS - {"transaction_id"}} == {
        "amount": "15000.00",
        "currency": "GHS",
        "wallet_balance": "5000.00",
        "status": "paid",
    }
    assert (tx.type, tx.status, tx.amount, tx.balance_after, tx.bill_id, tx.payer_id) == (
        "bill_payment",
        "completed",
        Decimal("-15000.00"),
        Decimal("5000.00"),
        bill.pk,
        me.user_id,
    )
    assert balance(me) == Decimal("5000.00")
    receipt = Notification.objects.get(event="PAYMENT_SUCCESSFUL")
    assert receipt.recipient_id == me.user_id
    mine = api_as(me).get(f"{base(estate)}/bills/{bill.pk}/").json()
    assert (mine["status"], mine["can_pay"]) == ("paid", False)
    assert datetime.datetime.fromisoformat(mine["paid_at"]) == tx.created_at


def test_pay_after_the_due_date_when_allowed(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("100.00"), allow_payment_after_due=True)
    ack(me, bill)
    make_past_due(bill)
    estate.fund(me, "100.00")
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    assert response.status_code == 201, response.json()
    assert response.json()["wallet_balance"] == "0.00"
    assert balance(me) == Decimal("0.00")


def _refused_bill(estate: Estate, me: Membership, code: str) -> Bill:
    bill = estate.wide_bill(amount=Decimal("100.00"))
    if code == "bill_not_acknowledged":
        return bill
    ack(me, bill)
    if code == "bill_already_paid":
        bill_pay(access=access(me), bill=bill, idempotency_key=new_key())
    elif code == "bill_cancelled":
        bill_cancel(access=access(estate.admin), bill=bill, reason="x")
    elif code == "bill_waived":
        dispute = bill_dispute(access=access(me), bill=bill, reason="x")
        dispute_resolve(access=access(estate.admin), dispute=dispute, resolution="upheld", note="ok")
    elif code == "bill_disputed":
        bill_dispute(access=access(me), bill=bill, reason="x")
    elif code == "payment_after_due_not_allowed":
        make_past_due(bill)
    return bill


@pytest.mark.parametrize(
    "code",
    [
        "bill_not_acknowledged",
        "bill_already_paid",
        "bill_cancelled",
        "bill_waived",
        "bill_disputed",
        "payment_after_due_not_allowed",
    ],
)
def test_pay_refusals_move_no_money(estate: Estate, code: str) -> None:
    me = estate.residents[0]
    estate.fund(me, "1000.00")
    bill = _refused_bill(estate, me, code)
    before_balance, before_rows = balance(me), ledger_rows(me)
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    assert_error(response, 409, code)
    assert (balance(me), ledger_rows(me)) == (before_balance, before_rows)
    assert not Transaction.objects.filter(status="failed").exists()


def test_pay_with_insufficient_funds_records_a_failed_transaction(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    estate.fund(me, "1000.00")
    ack(me, bill)
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    body = assert_error(response, 402, "insufficient_funds")
    failed = Transaction.objects.get(status="failed")
    assert body["error"]["details"] == {
        "transaction_id": str(failed.pk),
        "amount": "15000.00",
        "failure_reason": "insufficient_funds",
    }
    assert (failed.type, failed.amount, failed.balance_after, failed.failure_reason, failed.bill_id) == (
        "bill_payment",
        Decimal("-15000.00"),
        None,
        "insufficient_funds",
        bill.pk,
    )
    assert balance(me) == Decimal("1000.00")
    alert = Notification.objects.get(event="PAYMENT_FAILED")
    assert (alert.recipient_id, alert.priority) == (me.user_id, "high")
    mine = api_as(me).get(f"{base(estate)}/bills/{bill.pk}/").json()
    assert (mine["status"], mine["paid_at"]) == ("acknowledged", None)


def test_pay_refusals_outside_the_rules(estate: Estate, other_estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    bill = estate.wide_bill()
    api = api_as(me)
    assert_error(api.post(f"{base(estate)}/bills/{bill.pk}/pay/"), 400, "idempotency_key_required")
    assert_error(api.post(f"{base(estate)}/bills/{bill.pk}/pay/", key="k" * 129), 400, "validation_error")
    for bill_id in (estate.user_bill(neighbour).pk, other_estate.wide_bill().pk, "bad-id"):
        assert_error(api.post(f"{base(estate)}/bills/{bill_id}/pay/", key=new_key()), 404, "not_found")
    assert_error(api_as(None).post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key()), 401, "not_authenticated")
    assert not Transaction.objects.exists()


# --- retry -------------------------------------------------------------------------------------


def _failed_payment(estate: Estate, me: Membership, amount: str = "500.00") -> tuple[Bill, Transaction]:
    bill = estate.wide_bill(amount=Decimal(amount))
    ack(me, bill)
    response = api_as(me).post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key())
    assert response.status_code == 402, response.json()
    return bill, Transaction.objects.get(pk=response.json()["error"]["details"]["transaction_id"])


def test_retry_a_failed_payment(estate: Estate) -> None:
    me = estate.residents[0]
    bill, failed = _failed_payment(estate, me)
    estate.fund(me, "800.00")
    api = api_as(me)
    response = api.post(f"{base(estate)}/transactions/{failed.pk}/retry/", key=new_key())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in PAYMENT_FIELDS - {"transaction_id"}} == {
        "amount": "500.00",
        "currency": "NGN",
        "wallet_balance": "300.00",
        "status": "paid",
    }
    retried = Transaction.objects.get(pk=body["transaction_id"])
    assert (retried.status, retried.retry_of_id, retried.bill_id) == ("completed", failed.pk, bill.pk)
    failed.refresh_from_db()
    assert failed.status == "failed"  # the failed entry stays as it was
    assert balance(me) == Decimal("300.00")
    again = api.post(f"{base(estate)}/transactions/{failed.pk}/retry/", key=new_key())
    assert_error(again, 409, "bill_already_paid")
    assert balance(me) == Decimal("300.00")
    assert Transaction.objects.filter(bill=bill, status="completed").count() == 1


def test_retry_that_fails_again_is_recorded_and_linked(estate: Estate) -> None:
    me = estate.residents[0]
    _, failed = _failed_payment(estate, me)
    response = api_as(me).post(f"{base(estate)}/transactions/{failed.pk}/retry/", key=new_key())
    body = assert_error(response, 402, "insufficient_funds")
    second = Transaction.objects.get(pk=body["error"]["details"]["transaction_id"])
    assert (second.status, second.retry_of_id) == ("failed", failed.pk)
    assert Transaction.objects.filter(status="failed").count() == 2
    assert balance(me) == Decimal("0.00")


def test_retry_refusals(estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    _, failed = _failed_payment(estate, me)
    deposit = estate.fund(me, "10.00")
    api = api_as(me)
    assert_error(
        api.post(f"{base(estate)}/transactions/{deposit.pk}/retry/", key=new_key()), 409, "transaction_not_retryable"
    )
    assert_error(api.post(f"{base(estate)}/transactions/{failed.pk}/retry/"), 400, "idempotency_key_required")
    theirs = api_as(neighbour).post(f"{base(estate)}/transactions/{failed.pk}/retry/", key=new_key())
    assert_error(theirs, 404, "not_found")
    assert_error(api.post(f"{base(estate)}/transactions/nope/retry/", key=new_key()), 404, "not_found")
    assert_error(api.post(f"{base(estate)}/transactions/{uuid.uuid4()}/retry/", key=new_key()), 404, "not_found")
    assert Transaction.objects.count() == 2


# --- wallet ------------------------------------------------------------------------------------


def test_wallet(db: None) -> None:
    estate = make_estate(currency="KES")
    me = estate.residents[0]
    api = api_as(me)
    response = api.get(f"{base(estate)}/wallet/")
    assert response.status_code == 200, response.json()
    assert response.json() == {"balance": "0.00", "currency": "KES"}
    estate.fund(me, "1234.50")
    assert api.get(f"{base(estate)}/wallet/").json() == {"balance": "1234.50", "currency": "KES"}
    # Staff members have a wallet too.
    assert api_as(estate.auditor).get(f"{base(estate)}/wallet/").json() == {"balance": "0.00", "currency": "KES"}


def test_wallet_of_another_estate_is_404(estate: Estate, other_estate: Estate) -> None:
    me = estate.residents[0]
    assert_error(api_as(me).get(f"{base(other_estate)}/wallet/"), 404, "not_found")
    assert_error(api_as(me).get("/api/v1/clusters/nope/wallet/"), 404, "not_found")


def test_wallet_transactions_newest_first(estate: Estate, other_estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("300.00"))
    ack(me, bill)
    deposit = estate.fund(me, "100.00")
    api = api_as(me)
    failed_id = api.post(f"{base(estate)}/bills/{bill.pk}/pay/", key=new_key()).json()["error"]["details"][
        "transaction_id"
    ]
    top_up = estate.fund(me, "250.00")
    paid_id = api.post(f"{base(estate)}/transactions/{failed_id}/retry/", key=new_key()).json()["transaction_id"]
    estate.fund(estate.residents[1], "999.00")  # someone else's money
    other_estate.fund(other_estate.residents[0], "5.00")
    response = api.get(f"{base(estate)}/wallet/transactions/")
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [paid_id, str(top_up.pk), failed_id, str(deposit.pk)]
    assert [(row["type"], row["status"], row["amount"], row["balance_after"]) for row in rows] == [
        ("bill_payment", "completed", "-300.00", "50.00"),
        ("deposit", "completed", "250.00", "350.00"),
        ("bill_payment", "failed", "-300.00", None),
        ("deposit", "completed", "100.00", "100.00"),
    ]
    assert {row["currency"] for row in rows} == {"NGN"}
    assert rows[0]["retry_of_id"] == failed_id
    assert rows[2]["failure_reason"] == "insufficient_funds"
    assert {row["user_id"] for row in rows} == {str(me.user_id)}


def test_wallet_transactions_pagination_walks_every_entry_once(estate: Estate) -> None:
    me = estate.residents[0]
    created = [estate.fund(me, f"{i + 1}.00") for i in range(7)]
    api = api_as(me)
    first = api.get(f"{base(estate)}/wallet/transactions/", page_size=3).json()
    assert len(first["results"]) == 3
    assert first["previous"] is None
    rows = walk(api, f"{base(estate)}/wallet/transactions/", page_size=3)
    assert [row["id"] for row in rows] == [str(tx.pk) for tx in reversed(created)]
    second = api.client.get(first["next"]).json()
    assert [row["id"] for row in api.client.get(second["previous"]).json()["results"]] == [
        row["id"] for row in first["results"]
    ]


def test_my_bills_pagination_walks_every_bill_once(estate: Estate) -> None:
    me = estate.residents[0]
    created = [estate.wide_bill(title=f"B{i}") for i in range(5)]
    rows = walk(api_as(me), f"{base(estate)}/bills/", page_size=2)
    assert [row["id"] for row in rows] == [str(b.pk) for b in reversed(created)]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ['{"reason": ', "[]", '"text"', "null", '{"reason": {"text": "x"}}', '{"reason": ' + "1" * 5000 + "}"]
)
def test_bad_dispute_bodies_never_give_500(estate: Estate, raw: str) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    response = api_as(me).client.post(
        f"{base(estate)}/bills/{bill.pk}/dispute/", data=raw, content_type="application/json"
    )
    assert_error(response, 400, "validation_error")
    assert not BillDispute.objects.exists()


def test_pay_ignores_a_junk_body_but_not_the_rules(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    response = api_as(me).client.post(
        f"{base(estate)}/bills/{bill.pk}/pay/",
        data='{"amount": "0.01", "user_id": "someone-else"}',
        content_type="application/json",
        headers={"Idempotency-Key": new_key()},
    )
    assert_error(response, 409, "bill_not_acknowledged")
    malformed = api_as(me).client.post(
        f"{base(estate)}/bills/{bill.pk}/pay/",
        data="{not json",
        content_type="application/json",
        headers={"Idempotency-Key": new_key()},
    )
    assert malformed.status_code in (400, 409), malformed.content
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "bills/1/"),
        ("post", "bills/1/acknowledge/"),
        ("post", "bills/%2e%2e/dispute/"),
        ("post", "bills/0x1F/pay/"),
        ("post", "transactions/-1/retry/"),
        ("get", "bills/00000000-0000-0000-0000-0000000000001/"),
    ],
)
def test_non_uuid_ids_are_404(estate: Estate, method: str, path: str) -> None:
    api = api_as(estate.residents[0])
    url = f"{base(estate)}/{path}"
    response = api.get(url) if method == "get" else api.post(url, {"reason": "x"}, key=new_key())
    assert_error(response, 404, "not_found")
