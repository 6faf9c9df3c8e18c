"""Refunds of payments of bills that are not cancelled: the payment stops counting as
paid everywhere the "paid" fact is read — the member's status, the bill's counters, the
member list's summary, reminders, late fees — and the member may pay the bill again,
once per refund (docs/decisions/0028-refunds-of-live-bills.md)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest

from levy.audit.models import AuditEvent
from levy.billing.counters import counters_drift
from levy.billing.late_fees import late_fees_issue_due
from levy.billing.models import Bill
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.selectors import (
    BillStats,
    attach_member_summaries,
    bill_member_statuses,
    bills_with_stats,
    decorate_bill_members,
    decorate_member_bills,
    estate_today,
    member_bills,
    read_member_facts,
)
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute
from levy.billing.status import BillStatus
from levy.estates.models import Membership
from levy.members.services import member_add, member_update
from levy.notifications.models import Notification
from levy.notifications.recipients import Recipients
from levy.wallets.models import Transaction, TransactionStatus, TransactionType
from levy.wallets.selectors import cluster_revenue, ledger_balance
from tests.billing.test_services import raises_code
from tests.conftest import Estate, access, committed, new_key
from tests.wallets.test_services import wallet_of

pytestmark = pytest.mark.django_db


def stats(bill: Bill) -> BillStats:
    """The bill's counters, after checking they equal the recount from the facts."""
    assert counters_drift(Bill.objects.filter(pk=bill.pk)) == []
    return BillStats.of(bills_with_stats(Bill.objects.filter(pk=bill.pk)).get())


def pay(member: Membership, bill: Bill, key: str | None = None) -> Transaction:
    with committed():
        return bill_pay(access=access(member), bill=bill, idempotency_key=key or new_key("pay"))


def refund(estate: Estate, payment: Transaction, **kwargs: Any) -> Transaction:
    with committed():
        return bill_payment_refund(
            access=access(estate.treasurer), payment=payment, idempotency_key=new_key("refund"), **kwargs
        )


def statuses(bill: Bill, member: Membership) -> set[str]:
    """The member's status for the bill, read every way the app reads it."""
    bill = Bill.objects.get(pk=bill.pk)
    mine = [b for b in member_bills(membership=member) if b.pk == bill.pk]
    page = decorate_member_bills([Bill.objects.get(pk=bill.pk)], membership=member)
    audience = [m for m in bill_member_statuses(bill=bill) if m.user_id == member.user_id]
    row = decorate_bill_members([Membership.objects.get(pk=member.pk)], bill=bill)
    return {bill.status_for(member.user), mine[0].status, page[0].status, audience[0].status, row[0].status}


def summary(member: Membership) -> tuple[int, int, int]:
    """The member list's (outstanding, overdue, paid) counts for the member."""
    row = Membership.objects.get(pk=member.pk)
    attach_member_summaries([row])
    return row.sum_outstanding_count, row.sum_overdue_count, row.sum_paid_count  # type: ignore[attr-defined]


def one_paid(estate: Estate, funds: str = "100.00", key: str | None = None) -> tuple[Membership, Bill, Transaction]:
    """A resident funded, who acknowledged and paid a bill of 100.00."""
    member = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("100.00"))
    estate.fund(member, funds)
    bill_acknowledge(access=access(member), bill=bill)
    return member, bill, pay(member, bill, key)


def both_paid(estate: Estate, funds: str) -> tuple[Membership, Membership, Bill, Transaction, Transaction]:
    """Two residents funded, who acknowledged and paid a bill of 100.00."""
    member, other, _ = estate.residents
    bill = estate.wide_bill(amount=Decimal("100.00"))
    for who in (member, other):
        estate.fund(who, funds)
        bill_acknowledge(access=access(who), bill=bill)
    return member, other, bill, pay(member, bill), pay(other, bill)


def test_a_refunded_payment_of_a_live_bill_no_longer_counts_as_paid(estate: Estate) -> None:
    member, other, bill, payment, _ = both_paid(estate, "300.00")
    assert statuses(bill, member) == {BillStatus.PAID}
    assert (stats(bill).paid, stats(bill).collected_amount, stats(bill).outstanding) == (2, Decimal("200.00"), 1)
    assert summary(member) == (0, 0, 1)

    refunded = refund(estate, payment, note="Paid in cash at the office")

    assert (refunded.type, refunded.amount, refunded.reverses_id, refunded.reopens_bill) == (
        TransactionType.REFUND,
        Decimal("100.00"),
        payment.pk,
        True,
    )
    assert statuses(bill, member) == {BillStatus.ACKNOWLEDGED}
    assert statuses(bill, other) == {BillStatus.PAID}
    assert (stats(bill).paid, stats(bill).collected_amount, stats(bill).outstanding) == (1, Decimal("100.00"), 2)
    assert summary(member) == (1, 0, 0)
    facts = read_member_facts(bill=bill, user=member.user)
    assert (facts.paid, facts.acknowledged, facts.payments) == (False, True, 1)
    # Reminders and the cancellation notice reach them again; the other payer is left out.
    unpaid = set(Recipients.bill_unpaid(bill).memberships(estate.cluster.pk).values_list("user_id", flat=True))
    assert member.user_id in unpaid and other.user_id not in unpaid
    owing = Recipients.bill_owing_undisputed(bill).memberships(estate.cluster.pk)
    assert owing.filter(user_id=member.user_id).exists()
    # The money is back; the payment itself is untouched on the ledger.
    assert wallet_of(member).balance == Decimal("300.00") == ledger_balance(wallet_of(member))
    assert cluster_revenue(estate.cluster) == Decimal("100.00")
    payment.refresh_from_db()
    assert (payment.status, payment.amount, payment.settlement) == (TransactionStatus.COMPLETED, -bill.amount, 0)
    audit = AuditEvent.objects.get(action="payment.refund")
    assert audit.data == {
        "payment_id": str(payment.pk),
        "amount": "100.00",
        "bill_id": str(bill.pk),
        "reason": "Paid in cash at the office",
        "reopens_bill": True,
    }
    told = Notification.objects.get(recipient=member.user, event="PAYMENT_REFUNDED")
    assert told.body.endswith("Wallet balance ₦300.00. The bill is unpaid again: pay it when you are ready.")
    # Owing it again, they may dispute it now.
    with committed():
        bill_dispute(access=access(member), bill=bill, reason="I paid in cash")
    assert statuses(bill, member) == {BillStatus.DISPUTED}
    assert stats(bill).disputed == 1


def test_past_its_due_date_the_member_is_overdue_again(estate: Estate) -> None:
    member, bill, payment = one_paid(estate)
    Bill.objects.filter(pk=bill.pk).update(due_date=estate_today() - datetime.timedelta(days=2))
    bill.refresh_from_db()
    refund(estate, payment)
    assert statuses(bill, member) == {BillStatus.OVERDUE}
    assert summary(member) == (1, 1, 0)
    assert stats(bill).overdue == 3
    # Past due and not payable after it: the refund does not reopen the payment window.
    with raises_code("payment_after_due_not_allowed"), committed():
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())


def test_the_member_pays_again_once_per_refund(estate: Estate) -> None:
    member, bill, first = one_paid(estate, "500.00", key="first")
    refund(estate, first)

    second = pay(member, bill)
    assert (second.settlement, second.amount, second.balance_after) == (1, Decimal("-100.00"), Decimal("400.00"))
    assert statuses(bill, member) == {BillStatus.PAID}
    assert (stats(bill).paid, stats(bill).collected_amount) == (1, Decimal("100.00"))
    with raises_code("bill_already_paid"), committed():
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    # The first payment's key still answers with the first payment, and moves nothing.
    assert pay(member, bill, key="first").pk == first.pk
    # Refunded again, paid a third time.
    refund(estate, second)
    third = pay(member, bill)
    assert third.settlement == 2
    assert wallet_of(member).balance == Decimal("400.00") == ledger_balance(wallet_of(member))
    completed = Transaction.objects.filter(bill=bill, payer=member.user, type="bill_payment", status="completed")
    assert sorted(completed.values_list("settlement", flat=True)) == [0, 1, 2]
    assert (stats(bill).paid, stats(bill).collected_amount) == (1, Decimal("100.00"))
    with raises_code("payment_already_refunded"):
        refund(estate, first)


def test_a_cancelled_bills_refund_still_counts_the_payment_as_paid(estate: Estate) -> None:
    """Unchanged: the bill is void for everyone, and its counts keep who had paid."""
    member, other, bill, refunded_live, paid_then_cancelled = both_paid(estate, "100.00")
    refund(estate, refunded_live)
    with committed():
        bill_cancel(access=access(estate.admin), bill=bill, reason="Issued twice")
    refunded = refund(estate, paid_then_cancelled)
    assert refunded.reopens_bill is False
    assert statuses(bill, other) == statuses(bill, member) == {BillStatus.CANCELLED}
    # The payment refunded while the bill was live left the count then; the other stays.
    assert (stats(bill).paid, stats(bill).collected_amount, stats(bill).outstanding) == (1, Decimal("0.00"), 0)
    assert read_member_facts(bill=bill, user=other.user).paid
    assert not read_member_facts(bill=bill, user=member.user).paid


def test_a_refund_to_a_member_who_left_moves_only_the_money(estate: Estate) -> None:
    member, bill, payment = one_paid(estate)
    with committed():
        member_update(access=access(estate.admin), membership=member, active=False)
    assert (stats(bill).eligible, stats(bill).paid, stats(bill).collected_amount) == (2, 0, Decimal("100.00"))
    refund(estate, payment)
    # Out of the audience, they were not counted as paid: only the money moves.
    assert (stats(bill).eligible, stats(bill).paid, stats(bill).collected_amount) == (2, 0, Decimal("0.00"))
    with committed():
        member_add(access=access(estate.admin), email=member.user.email)
    # Back, the estate-wide bill issued before their return no longer applies to them.
    assert (stats(bill).eligible, stats(bill).paid) == (2, 0)


def test_a_member_whose_payment_was_refunded_gets_the_late_fee() -> None:
    from tests.billing.test_late_fees import DUE, late_bill
    from tests.conftest import make_estate

    estate = make_estate(residents=2)
    refunded, kept = estate.residents
    bill = late_bill(estate, amount=Decimal("1000.00"))
    payments = {}
    for who in (refunded, kept):
        estate.fund(who, "1000.00")
        bill_acknowledge(access=access(who), bill=bill)
        payments[who.pk] = pay(who, bill)
    refund(estate, payments[refunded.pk])
    day = DUE + datetime.timedelta(days=4)
    assert late_fees_issue_due(day) == {"date": day.isoformat(), "bills": 1, "fees": 1}
    assert list(Bill.objects.filter(late_fee_of=bill).values_list("user_id", flat=True)) == [refunded.user_id]
    assert counters_drift(Bill.objects.all()) == []
