"""The database itself refuses what the services must never do."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, InternalError, connection, transaction
from django.utils import timezone

from levy.billing.models import Bill, BillDispute
from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge
from levy.estates.models import Cluster, Membership
from levy.wallets.models import Transaction, Wallet
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db

DB_ERRORS = (IntegrityError, InternalError)


def paid(estate: Estate) -> Transaction:
    member = estate.residents[0]
    estate.fund(member, "15000.00")
    bill = estate.wide_bill()
    bill_acknowledge(access=access(member), bill=bill)
    return bill_pay(access=access(member), bill=bill, idempotency_key=new_key())


def check_deferred() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_wallet_balance_cannot_go_negative(estate: Estate) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(cluster=estate.cluster).update(balance=Decimal("-0.01"))


def test_ledger_entries_cannot_be_edited_or_deleted(estate: Estate) -> None:
    tx = paid(estate)
    with pytest.raises(DB_ERRORS, match="append-only"), transaction.atomic():
        Transaction.objects.filter(pk=tx.pk).update(amount=Decimal("-1.00"))
    with pytest.raises(DB_ERRORS, match="append-only"), transaction.atomic():
        Transaction.objects.filter(pk=tx.pk).delete()
    with pytest.raises(DB_ERRORS, match="settled"), transaction.atomic():
        Transaction.objects.filter(pk=tx.pk).update(status="failed", balance_after=None, failure_reason="x")
    tx.refresh_from_db()
    assert (tx.amount, tx.status) == (Decimal("-15000.00"), "completed")


def payment_row(tx: Transaction, reference: str, **overrides: Any) -> Transaction:
    values: dict[str, Any] = dict(
        cluster=tx.cluster,
        wallet=tx.wallet,
        type="bill_payment",
        status="completed",
        amount=tx.amount,
        balance_after=Decimal("0.00"),
        bill=tx.bill,
        payer=tx.payer,
        initiated_by=tx.payer,
        reference=reference,
        idempotency_key=reference,
    )
    values.update(overrides)
    return Transaction.objects.create(**values)


def test_a_bill_is_paid_at_most_once_per_member_and_settlement_by_constraint(estate: Estate) -> None:
    tx = paid(estate)
    assert tx.settlement == 0
    with pytest.raises(IntegrityError, match="tx_one_payment_per_bill_member_settlement"), transaction.atomic():
        payment_row(tx, "TX-DUP")
    # A failed attempt takes no number.
    payment_row(tx, "TX-FAILED", status="failed", balance_after=None, failure_reason="insufficient_funds")


def test_a_member_pays_a_bill_again_only_after_a_refund_that_reopened_it(estate: Estate) -> None:
    """At most one live payment, whatever writes the ledger: payment n > 0 must follow
    payment n - 1 refunded while the bill was live."""
    tx = paid(estate)
    for settlement in (1, 2):  # the first payment is live; a gap is no better
        with pytest.raises(IntegrityError, match="tx_one_live_payment"), transaction.atomic():
            payment_row(tx, f"TX-{settlement}", settlement=settlement)
    # A refund that left the payment counted (a cancelled bill's) does not open the way.
    payment_row(tx, "TX-KEPT", type="refund", amount=-tx.amount, reverses=tx)
    with pytest.raises(IntegrityError, match="tx_one_live_payment"), transaction.atomic():
        payment_row(tx, "TX-AFTER-KEPT", settlement=1)
    other = paid(estate)
    payment_row(other, "TX-REOPEN", type="refund", amount=-other.amount, reverses=other, reopens_bill=True)
    again = payment_row(other, "TX-AGAIN", settlement=1)
    with pytest.raises(IntegrityError, match="tx_one_payment_per_bill_member_settlement"), transaction.atomic():
        payment_row(other, "TX-AGAIN-2", settlement=1)
    with pytest.raises(IntegrityError, match="tx_one_live_payment"), transaction.atomic():
        payment_row(other, "TX-AGAIN-3", settlement=2)
    assert again.settlement == 1


def test_only_payments_have_a_settlement_and_only_refunds_reopen_a_bill(estate: Estate) -> None:
    tx = paid(estate)
    failed = {"status": "failed", "balance_after": None, "failure_reason": "insufficient_funds"}
    with pytest.raises(IntegrityError, match="tx_settlement_on_bill_payments"), transaction.atomic():
        payment_row(tx, "TX-NEG", settlement=-1, **failed)
    with pytest.raises(IntegrityError, match="tx_settlement_on_bill_payments"), transaction.atomic():
        payment_row(tx, "TX-DEP", type="deposit", amount=Decimal("5.00"), bill=None, settlement=2)
    with pytest.raises(IntegrityError, match="tx_only_refunds_reopen"), transaction.atomic():
        payment_row(tx, "TX-REOPEN", reopens_bill=True, **failed)


def test_a_refund_cannot_be_made_to_reopen_a_bill_or_not_afterwards(estate: Estate) -> None:
    tx = paid(estate)
    refund = payment_row(tx, "TX-REFUND", type="refund", amount=-tx.amount, reverses=tx, reopens_bill=True)
    with pytest.raises(DB_ERRORS, match="append-only"), transaction.atomic():
        Transaction.objects.filter(pk=refund.pk).update(reopens_bill=False)
    with pytest.raises(DB_ERRORS, match="append-only"), transaction.atomic():
        Transaction.objects.filter(pk=tx.pk).update(settlement=5)


def test_amount_signs_and_positive_bill_amounts_are_checked(estate: Estate) -> None:
    tx = paid(estate)
    with pytest.raises(IntegrityError, match="tx_amount_sign_matches_type"), transaction.atomic():
        Transaction.objects.create(
            cluster=tx.cluster,
            wallet=tx.wallet,
            type="deposit",
            status="completed",
            amount=Decimal("-5.00"),
            balance_after=Decimal("0.00"),
            payer=tx.payer,
            initiated_by=tx.payer,
            reference="TX-NEG",
            idempotency_key="neg",
        )
    with pytest.raises(IntegrityError, match="bill_amount_positive"), transaction.atomic():
        Bill.objects.filter(pk=tx.bill_id).update(amount=Decimal("0.00"))


def test_rows_cannot_point_across_estates(estate: Estate, other_estate: Estate) -> None:
    tx = paid(estate)
    outsider = other_estate.residents[0]
    with pytest.raises(IntegrityError, match="bill_target_is_member"), transaction.atomic():
        Bill.objects.filter(pk=tx.bill_id).update(user=outsider.user)
        check_deferred()
    with pytest.raises(IntegrityError, match="dispute_bill_in_cluster"), transaction.atomic():
        BillDispute.objects.create(cluster=other_estate.cluster, bill=tx.bill, user=outsider.user, reason="x")
        check_deferred()
    other_wallet = Wallet.objects.get(cluster=other_estate.cluster, user=outsider.user)
    with pytest.raises(IntegrityError, match="tx_wallet_in_cluster"), transaction.atomic():
        Transaction.objects.create(
            cluster=estate.cluster,
            wallet=other_wallet,
            type="deposit",
            status="completed",
            amount=Decimal("5.00"),
            balance_after=Decimal("5.00"),
            payer=outsider.user,
            initiated_by=outsider.user,
            reference="TX-X",
            idempotency_key="x",
        )
        check_deferred()
    with pytest.raises(IntegrityError, match="wallet_owner_is_member"), transaction.atomic():
        Wallet.objects.create(cluster=estate.cluster, user=outsider.user)
        check_deferred()


def test_one_open_dispute_per_member_per_bill_by_constraint(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    BillDispute.objects.create(cluster=estate.cluster, bill=bill, user=member.user, reason="a")
    with pytest.raises(IntegrityError, match="dispute_one_open_per_member"), transaction.atomic():
        BillDispute.objects.create(cluster=estate.cluster, bill=bill, user=member.user, reason="b")


@pytest.mark.django_db
def test_the_estate_row_counts_its_billable_members() -> None:
    """Triggers keep Cluster.billable_members equal to the active resident memberships,
    whatever writes them (services, the admin, bulk inserts)."""
    estate = make_estate(residents=3)  # plus admin, treasurer and auditor: not residents

    def counted() -> tuple[int, int]:
        stored = Cluster.objects.values_list("billable_members", flat=True).get(pk=estate.cluster.pk)
        actual = Membership.objects.filter(cluster=estate.cluster, active=True, is_resident=True).count()
        return stored, actual

    assert counted() == (3, 3)
    Membership.objects.filter(pk=estate.residents[0].pk).update(active=False, deactivated_at=timezone.now())
    assert counted() == (2, 2)
    Membership.objects.filter(pk=estate.treasurer.pk).update(is_resident=True)
    assert counted() == (3, 3)
    Membership.objects.filter(cluster=estate.cluster).update(role="resident")  # no billable change
    assert counted() == (3, 3)
    Membership.objects.filter(pk=estate.residents[0].pk).update(active=True, deactivated_at=None)
    assert counted() == (4, 4)


@pytest.mark.django_db
def test_statements_are_prepared_but_always_planned_for_their_values(estate: Estate) -> None:
    """Prepared statements (parsed once per connection) with custom plans only: a
    generic plan cannot prove a partial index's predicate (``active = $2``), and the
    audience page's generic plan scanned the whole estate."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_custom_plan"
    assert connection.settings_dict["OPTIONS"]["server_side_binding"] is True
    for _ in range(6):  # past the prepare threshold
        Membership.objects.filter(cluster=estate.cluster, active=True, is_resident=True).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%estates_membership%"])
        assert cursor.fetchone()[0] >= 1


@pytest.mark.django_db
def test_requests_statements_are_never_jit_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL's JIT compiles a statement whose estimated cost passes jit_above_cost:
    worth it for long analytic queries, not for a request's — a resident's bill list at
    data set L spent 105 of its 131 ms compiling. The application's connections turn it
    off, with or without prepared statements."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
    from config.settings import database_from_url

    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "0")
    assert database_from_url("postgres://u@h/db")["OPTIONS"] == {"options": "-c jit=off"}
