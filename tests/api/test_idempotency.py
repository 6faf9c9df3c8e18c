"""``Idempotency-Key`` on the money-moving endpoints (targets.md, row "idempotency").

Replay -> the same response and no second movement; the same key with another body ->
422; no key -> 400; a concurrent duplicate -> 409 or the replay, and exactly one debit.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from levy.api.models import IdempotencyRecord
from levy.billing.models import Bill
from levy.billing.services import bill_acknowledge
from levy.estates.models import Membership
from levy.wallets.models import Transaction, Wallet
from tests.api.conftest import api_as, assert_error, base
from tests.conftest import Estate, access, make_estate, new_key

REPLAYED = "Idempotent-Replayed"
THREADS = 12
JOIN_TIMEOUT = 60


# --- helpers ---------------------------------------------------------------------------------


def pay_path(estate: Estate, bill: Bill) -> str:
    return f"{base(estate)}/bills/{bill.pk}/pay/"


def credit_path(estate: Estate, member: Membership) -> str:
    return f"{base(estate)}/management/wallets/{member.user_id}/credit/"


def wallet(member: Membership) -> Wallet:
    return Wallet.objects.get(cluster_id=member.cluster_id, user_id=member.user_id)


def books(member: Membership) -> tuple[Decimal, int]:
    """(wallet balance, number of ledger rows) — what must not move on a replay."""
    w = wallet(member)
    return w.balance, Transaction.objects.filter(wallet=w).count()


def acknowledged_bill(estate: Estate, member: Membership, amount: str = "15000.00") -> Bill:
    bill = estate.wide_bill(amount=Decimal(amount))
    bill_acknowledge(access=access(member), bill=bill)
    return bill


# --- replay ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_payment_replay_returns_the_first_response_and_moves_nothing(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = acknowledged_bill(estate, me)
    api = api_as(me)
    key = new_key("pay")
    first = api.post(pay_path(estate, bill), key=key)
    assert first.status_code == 201, first.json()
    assert REPLAYED not in first
    after_first = books(me)
    assert after_first == (Decimal("5000.00"), 2)
    for _ in range(3):
        replay = api.post(pay_path(estate, bill), key=key)
        assert replay.status_code == 201
        assert replay.json() == first.json()
        assert replay[REPLAYED] == "true"
    assert books(me) == after_first
    assert Transaction.objects.filter(bill=bill, type="bill_payment").count() == 1
    record = IdempotencyRecord.objects.get(user=me.user, key=key)
    assert (record.state, record.response_status) == ("completed", 201)


@pytest.mark.django_db
def test_credit_replay_returns_the_first_response_even_after_the_wallet_moved(estate: Estate) -> None:
    me = estate.residents[0]
    treasurer = api_as(estate.treasurer)
    key = new_key("credit")
    first = treasurer.post(credit_path(estate, me), {"amount": "500.00", "note": "cash"}, key=key)
    assert first.status_code == 201, first.json()
    assert first.json()["balance_after"] == "500.00"
    estate.fund(me, "100.00")  # the wallet moves in between
    before = books(me)
    replay = treasurer.post(credit_path(estate, me), {"note": "cash", "amount": "500.00"}, key=key)
    assert replay.status_code == 201
    assert replay.json() == first.json()  # still the first balance_after: it is the first response
    assert replay[REPLAYED] == "true"
    assert books(me) == before == (Decimal("600.00"), 2)


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_422_and_moves_nothing(estate: Estate) -> None:
    me = estate.residents[0]
    treasurer = api_as(estate.treasurer)
    key = new_key("credit")
    first = treasurer.post(credit_path(estate, me), {"amount": "500.00"}, key=key)
    assert first.status_code == 201, first.json()
    before = books(me)
    for body in ({"amount": "600.00"}, {"amount": "500.00", "note": "different"}):
        response = treasurer.post(credit_path(estate, me), body, key=key)
        assert_error(response, 422, "idempotency_key_reused")
        assert REPLAYED not in response
    assert books(me) == before == (Decimal("500.00"), 1)
    # The first response is still what the key replays.
    assert treasurer.post(credit_path(estate, me), {"amount": "500.00"}, key=key).json() == first.json()


@pytest.mark.django_db
def test_same_key_for_another_member_or_bill_is_422(estate: Estate) -> None:
    me, neighbour, _ = estate.residents
    treasurer = api_as(estate.treasurer)
    key = new_key("credit")
    assert treasurer.post(credit_path(estate, me), {"amount": "50.00"}, key=key).status_code == 201
    other_member = treasurer.post(credit_path(estate, neighbour), {"amount": "50.00"}, key=key)
    assert_error(other_member, 422, "idempotency_key_reused")
    assert books(neighbour) == (Decimal("0.00"), 0)

    estate.fund(me, "1000.00")
    first_bill = acknowledged_bill(estate, me, "100.00")
    second_bill = acknowledged_bill(estate, me, "100.00")
    api = api_as(me)
    pay_key = new_key("pay")
    assert api.post(pay_path(estate, first_bill), key=pay_key).status_code == 201
    before = books(me)
    assert_error(api.post(pay_path(estate, second_bill), key=pay_key), 422, "idempotency_key_reused")
    assert books(me) == before
    assert not Transaction.objects.filter(bill=second_bill).exists()


@pytest.mark.django_db
def test_missing_key_is_400_and_moves_nothing(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = acknowledged_bill(estate, me)
    before = books(me)
    api = api_as(me)
    assert_error(api.post(pay_path(estate, bill)), 400, "idempotency_key_required")
    blank = api.client.post(pay_path(estate, bill), {}, format="json", headers={"Idempotency-Key": "   "})
    assert_error(blank, 400, "idempotency_key_required")
    treasurer = api_as(estate.treasurer)
    assert_error(treasurer.post(credit_path(estate, me), {"amount": "10.00"}), 400, "idempotency_key_required")
    assert books(me) == before
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["k" * 129, "tab\tinside", "bell\x07"])
def test_malformed_key_is_a_validation_error(estate: Estate, key: str) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = acknowledged_bill(estate, me)
    before = books(me)
    response = api_as(me).client.post(pay_path(estate, bill), {}, format="json", headers={"Idempotency-Key": key})
    body = assert_error(response, 400, "validation_error")
    assert "Idempotency-Key" in body["error"]["details"]["fields"]
    assert books(me) == before


@pytest.mark.django_db
def test_a_key_of_128_characters_is_accepted(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = acknowledged_bill(estate, me)
    assert api_as(me).post(pay_path(estate, bill), key="k" * 128).status_code == 201


@pytest.mark.django_db
def test_keys_are_per_caller(estate: Estate) -> None:
    """Two residents who happen to send the same key each pay their own share."""
    r0, r1, _ = estate.residents
    bill = estate.wide_bill(amount=Decimal("100.00"))
    for member in (r0, r1):
        estate.fund(member, "100.00")
        bill_acknowledge(access=access(member), bill=bill)
    first = api_as(r0).post(pay_path(estate, bill), key="pay-the-levy")
    second = api_as(r1).post(pay_path(estate, bill), key="pay-the-levy")
    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in second
    assert first.json()["transaction_id"] != second.json()["transaction_id"]
    assert books(r0) == books(r1) == (Decimal("0.00"), 2)


@pytest.mark.django_db
def test_a_treasurers_credit_key_does_not_block_the_members_payment(estate: Estate) -> None:
    """Keys are per caller: the treasurer's key for a credit and the member's key for a
    payment live apart, even on the same wallet."""
    me = estate.residents[0]
    bill = acknowledged_bill(estate, me, "100.00")
    credit = api_as(estate.treasurer).post(credit_path(estate, me), {"amount": "100.00"}, key="2026-03-01-1")
    assert credit.status_code == 201, credit.json()
    response = api_as(me).post(pay_path(estate, bill), key="2026-03-01-1")
    assert response.status_code == 201, response.json()
    assert books(me) == (Decimal("0.00"), 2)
    # The treasurer's key still replays their own credit; an admin who happens to use the
    # same key records a credit of their own.
    again = api_as(estate.treasurer).post(credit_path(estate, me), {"amount": "100.00"}, key="2026-03-01-1")
    assert (again.status_code, again.json()["id"], again[REPLAYED]) == (201, credit.json()["id"], "true")
    by_admin = api_as(estate.admin).post(credit_path(estate, me), {"amount": "100.00"}, key="2026-03-01-1")
    assert by_admin.status_code == 201, by_admin.json()
    assert REPLAYED not in by_admin
    assert by_admin.json()["id"] != credit.json()["id"]
    assert books(me) == (Decimal("100.00"), 3)


# --- failed payments and refusals --------------------------------------------------------------


@pytest.mark.django_db
def test_failed_payment_replay_returns_the_same_402_and_records_nothing_more(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "1000.00")
    bill = acknowledged_bill(estate, me)
    api = api_as(me)
    key = new_key("pay")
    first = api.post(pay_path(estate, bill), key=key)
    assert_error(first, 402, "insufficient_funds")
    assert Transaction.objects.filter(status="failed").count() == 1
    before = books(me)
    replay = api.post(pay_path(estate, bill), key=key)
    assert replay.status_code == 402
    assert replay.json() == first.json()
    assert replay[REPLAYED] == "true"
    assert books(me) == before
    assert Transaction.objects.filter(status="failed").count() == 1
    # Even once the wallet could pay, the key answers what it answered the first time...
    estate.fund(me, "20000.00")
    funded = books(me)
    assert api.post(pay_path(estate, bill), key=key).json() == first.json()
    assert books(me) == funded
    # ...and a new key pays.
    paid = api.post(pay_path(estate, bill), key=new_key("pay"))
    assert paid.status_code == 201, paid.json()
    assert books(me) == (funded[0] - Decimal("15000.00"), funded[1] + 1)


@pytest.mark.django_db
def test_refusal_replay_returns_the_first_answer(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = estate.wide_bill()
    api = api_as(me)
    key = new_key("pay")
    first = api.post(pay_path(estate, bill), key=key)
    assert_error(first, 409, "bill_not_acknowledged")
    bill_acknowledge(access=access(me), bill=bill)
    replay = api.post(pay_path(estate, bill), key=key)
    assert (replay.status_code, replay.json(), replay[REPLAYED]) == (409, first.json(), "true")
    assert books(me) == (Decimal("20000.00"), 1)


@pytest.mark.django_db
def test_retry_replay_moves_money_once(estate: Estate) -> None:
    me = estate.residents[0]
    bill = acknowledged_bill(estate, me, "100.00")
    api = api_as(me)
    failed = api.post(pay_path(estate, bill), key=new_key("pay")).json()["error"]["details"]["transaction_id"]
    estate.fund(me, "150.00")
    key = new_key("retry")
    path = f"{base(estate)}/transactions/{failed}/retry/"
    first = api.post(path, key=key)
    assert first.status_code == 201, first.json()
    replay = api.post(path, key=key)
    assert (replay.status_code, replay.json(), replay[REPLAYED]) == (201, first.json(), "true")
    assert books(me) == (Decimal("50.00"), 3)


@pytest.mark.django_db
def test_a_key_still_in_progress_is_409_and_a_stale_one_is_taken_over_without_moving_money(
    estate: Estate,
) -> None:
    """A duplicate that arrives while the first request runs gets 409; a record left in
    progress by a request that died is taken over after a while, and the ledger's own key
    check still prevents a second debit."""
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = acknowledged_bill(estate, me)
    api = api_as(me)
    key = new_key("pay")
    first = api.post(pay_path(estate, bill), key=key)
    assert first.status_code == 201, first.json()
    after_first = books(me)
    records = IdempotencyRecord.objects.filter(user=me.user, key=key)
    # As if the first request had committed its payment and then died before recording it.
    records.update(state="in_progress", response_status=None, response_body=None, completed_at=None)
    records.update(created_at=timezone.now())
    assert_error(api.post(pay_path(estate, bill), key=key), 409, "idempotency_key_in_use")
    assert books(me) == after_first
    records.update(created_at=timezone.now() - datetime.timedelta(minutes=5))
    taken_over = api.post(pay_path(estate, bill), key=key)
    assert taken_over.status_code == 201, taken_over.json()
    assert taken_over.json()["transaction_id"] == first.json()["transaction_id"]
    assert books(me) == after_first
    assert records.get().state == "completed"


# --- concurrent duplicates ---------------------------------------------------------------------


@dataclass
class Outcome:
    status: int | None = None
    body: Any = None
    replayed: bool = False
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def send_concurrently(count: int, send: Callable[[], Any]) -> list[Outcome]:
    """``count`` threads, each with its own client and database connection, released
    together by a barrier; each closes its connection at the end."""
    barrier = threading.Barrier(count)
    outcomes = [Outcome() for _ in range(count)]

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = send()
            outcomes[i].status = response.status_code
            outcomes[i].body = response.json()
            outcomes[i].replayed = response.get(REPLAYED) == "true"
        except BaseException as exc:
            outcomes[i].error = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), name=f"duplicate-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a request thread is stuck"
    errors = [o.error for o in outcomes if o.error is not None]
    assert errors == [], errors
    return outcomes


def assert_one_winner(outcomes: list[Outcome], id_field: str) -> str:
    statuses = {o.status for o in outcomes}
    assert statuses <= {201, 409}, [(o.status, o.body) for o in outcomes]
    created = [o for o in outcomes if o.status == 201]
    assert created, "nobody got the 201"
    assert len({o.body[id_field] for o in created}) == 1
    assert len([o for o in created if not o.replayed]) == 1  # the original; the others are replays
    for o in outcomes:
        if o.status == 409:
            assert o.body["error"]["code"] == "idempotency_key_in_use", o.body
    return str(created[0].body[id_field])


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_payments_debit_once() -> None:
    estate = make_estate(residents=1)
    me = estate.residents[0]
    estate.fund(me, "1000.00")
    bill = acknowledged_bill(estate, me, "100.00")
    key = new_key("concurrent-pay")
    path = pay_path(estate, bill)
    clients = [api_as(me) for _ in range(THREADS)]
    taken = iter(clients)
    lock = threading.Lock()

    def send() -> Any:
        with lock:
            client = next(taken)
        return client.post(path, key=key)

    outcomes = send_concurrently(THREADS, send)
    tx_id = assert_one_winner(outcomes, "transaction_id")
    payments = Transaction.objects.filter(bill=bill, type="bill_payment")
    assert [str(pk) for pk in payments.values_list("pk", flat=True)] == [tx_id]
    assert payments.get().status == "completed"
    assert books(me) == (Decimal("900.00"), 2)
    assert IdempotencyRecord.objects.filter(user=me.user, key=key).count() == 1
    # Once the dust settles, the key replays the winner.
    replay = api_as(me).post(path, key=key)
    assert (replay.status_code, replay.json()["transaction_id"], replay[REPLAYED]) == (201, tx_id, "true")
    assert books(me) == (Decimal("900.00"), 2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_credits_credit_once() -> None:
    estate = make_estate(residents=1)
    me = estate.residents[0]
    key = new_key("concurrent-credit")
    path = credit_path(estate, me)
    clients = iter([api_as(estate.treasurer) for _ in range(THREADS)])
    lock = threading.Lock()

    def send() -> Any:
        with lock:
            client = next(clients)
        return client.post(path, {"amount": "250.00", "note": "cash"}, key=key)

    outcomes = send_concurrently(THREADS, send)
    tx_id = assert_one_winner(outcomes, "id")
    assert [str(pk) for pk in Transaction.objects.filter(wallet=wallet(me)).values_list("pk", flat=True)] == [tx_id]
    assert books(me) == (Decimal("250.00"), 1)
