"""Billing's fixed statements against their ORM references: on the same rows, both forms
answer the same and leave the same rows behind (each run in a transaction that is
rolled back, so that the other form starts from the same state). The counters' upsert
has its test in test_counters.py, the facts and the member summaries theirs in
test_status.py."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from levy.billing.issuing import _take_bill_number_orm, take_bill_number
from levy.billing.late_fees import _insert_late_fees, _insert_late_fees_orm
from levy.billing.models import Bill, BillCounter
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute, dispute_resolve
from levy.estates.models import Cluster
from levy.members.services import member_leave
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
DUE = estate_today() + datetime.timedelta(days=10)
TODAY = DUE + datetime.timedelta(days=5)
RULE: dict[str, Any] = {
    "due_date": DUE,
    "late_fee_kind": "percent",
    "late_fee_value": Decimal("2.5"),
    "late_fee_grace_days": 3,
}
# Every column of a fee but its id, its reference's number and ``updated_at`` (which
# the ORM's ``auto_now`` sets to the time of the save).
FEE_FIELDS = (
    "user_id", "cluster_id", "reference", "title", "description", "category", "amount", "due_date",
    "allow_payment_after_due", "created_by_id", "created_at", "cancelled_at", "cancelled_by_id",
    "cancellation_reason", "schedule_id", "schedule_period", "late_fee_kind", "late_fee_value",
    "late_fee_grace_days", "late_fees_issued_at", "late_fee_of_id",
)  # fmt: skip


def _both(statement: Callable[[], Any], reference: Callable[[], Any], snapshot: Callable[[], Any]) -> Any:
    """Run each form on the same rows; both must answer the same and leave the same
    rows. Returns that outcome."""
    outcomes = []
    for form in (statement, reference):
        with transaction.atomic():
            outcomes.append((form(), snapshot()))
            transaction.set_rollback(True)
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def test_taking_a_bill_number_matches_the_orm(estate: Estate) -> None:
    """``_take_bill_number_sql`` against ``_take_bill_number_orm``: the estate's sequence
    goes up by one and is read back with its billable count; other estates are untouched."""
    estate.wide_bill()
    other = make_estate(residents=1)

    def state() -> list[tuple[Any, ...]]:
        return list(Cluster.objects.order_by("pk").values_list("pk", "bill_sequence", "billable_members"))

    answer, _ = _both(lambda: take_bill_number(estate.cluster), lambda: _take_bill_number_orm(estate.cluster), state)
    assert answer == (2, len(estate.residents))
    _both(lambda: take_bill_number(other.cluster), lambda: _take_bill_number_orm(other.cluster), state)


def _fees(bill: Bill) -> Callable[[], tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """The fees of ``bill`` (their references' numbers, drawn from a sequence no
    rollback returns, left out) and their counter rows."""

    def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        fees = [
            (*row[:2], re.sub(r"-L\d+$", "-L#", row[2]), *row[3:])
            for row in Bill.objects.filter(late_fee_of=bill).order_by("user_id").values_list(*FEE_FIELDS)
        ]
        counters = list(
            BillCounter.objects.filter(bill__late_fee_of=bill)
            .order_by("bill__user_id")
            .values_list("bill__user_id", "slot", "eligible", "acknowledged", "paid", "waived", "disputed", "collected")
        )
        return fees, counters

    return snapshot


def _issue(bill: Bill, **kwargs: Any) -> tuple[Callable[[], int], Callable[[], int]]:
    def statement() -> int:
        return _insert_late_fees(bill, today=TODAY, now=NOW, **kwargs)

    def reference() -> int:
        return _insert_late_fees_orm(bill, today=TODAY, now=NOW, **kwargs)

    return statement, reference


def test_the_late_fee_insert_charges_whom_the_orm_charges() -> None:
    """``_insert_late_fees_sql`` against ``_insert_late_fees_orm`` on an estate-wide bill:
    a fee to each member still owing it — not one who paid, one with an open or upheld
    dispute, one who already has a fee, one who left, nor one who joined after the bill —
    and one to a member whose dispute was rejected or whose payment was refunded."""
    estate = make_estate(residents=8)
    paid, refunded, disputed, upheld, rejected, charged, left, owing = estate.residents
    bill = estate.wide_bill(**RULE)
    late = estate.add(joined_at=timezone.now())  # joined after the bill: not in its audience
    for member in (paid, refunded):
        estate.fund(member, "15000.00")
        bill_acknowledge(access=access(member), bill=bill)
        payment = bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))
    bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key=new_key("refund"))
    bill_dispute(access=access(disputed), bill=bill, reason="Not mine")
    for member, resolution in ((upheld, "upheld"), (rejected, "rejected")):
        dispute = bill_dispute(access=access(member), bill=bill, reason="Moved out")
        dispute_resolve(access=access(estate.admin), dispute=dispute, resolution=resolution, note="Checked")
    member_leave(access=access(left))
    assert _insert_late_fees(bill, today=TODAY, user_id=charged.user_id) == 1
    snapshot = _fees(bill)

    issued, (fees, counters) = _both(*_issue(bill), snapshot)
    owed = {refunded.user_id, rejected.user_id, owing.user_id}
    if estate.admin.is_resident:
        owed.add(estate.admin.user_id)
    for member in (estate.treasurer, estate.auditor):
        if member.is_resident:
            owed.add(member.user_id)
    assert issued == len(owed)
    assert {row[0] for row in fees} == owed | {charged.user_id}
    assert {row[0] for row in counters} == owed | {charged.user_id}
    assert late.user_id not in {row[0] for row in fees}
    assert all(row[6] == Decimal("375.00") for row in fees)

    # One member: charged when they owe it, not when they do not.
    assert _both(*_issue(bill, user_id=rejected.user_id), snapshot)[0] == 1
    assert _both(*_issue(bill, user_id=paid.user_id), snapshot)[0] == 0
    assert _both(*_issue(bill, user_id=charged.user_id), snapshot)[0] == 0


def test_the_late_fee_insert_on_a_members_bill_matches_the_orm(estate: Estate) -> None:
    """The same on a bill for one member: a fee to that member while they owe it, to
    nobody once they have paid it."""
    member, other = estate.residents[:2]
    bill = estate.user_bill(member, **RULE)
    snapshot = _fees(bill)
    assert _both(*_issue(bill), snapshot)[0] == 1
    assert _both(*_issue(bill, user_id=member.user_id), snapshot)[0] == 1
    assert _both(*_issue(bill, user_id=other.user_id), snapshot)[0] == 0
    estate.fund(member, "15000.00")
    bill_acknowledge(access=access(member), bill=bill)
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))
    assert _both(*_issue(bill), snapshot)[0] == 0
