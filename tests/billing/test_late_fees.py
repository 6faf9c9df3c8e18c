"""Late fees: the rule on a bill, the set-based issue after the grace period, and what
disputes and cancellation do to a fee afterwards."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from levy.audit.models import AuditEvent
from levy.billing.counters import counters_drift
from levy.billing.late_fees import _insert_late_fees, late_fee_amount, late_fees_issue_due
from levy.billing.models import Bill, BillDispute
from levy.billing.payments import bill_pay
from levy.billing.selectors import estate_today
from levy.billing.services import bill_cancel, bill_dispute, dispute_resolve
from levy.billing.status import BillStatus
from levy.common.errors import ValidationError
from levy.notifications.models import NotificationIntent
from levy.notifications.recipients import Recipients
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db

DUE = estate_today() + datetime.timedelta(days=10)


def late_bill(estate: Estate, **overrides: Any) -> Bill:
    values: dict[str, Any] = {
        "due_date": DUE,
        "late_fee_kind": "fixed",
        "late_fee_value": Decimal("500.00"),
        "late_fee_grace_days": 3,
    }
    values.update(overrides)
    return estate.wide_bill(**values)


def fees_of(bill: Bill) -> list[tuple[Any, Decimal, str | None]]:
    return sorted(
        Bill.objects.filter(late_fee_of=bill).values_list("user_id", "amount", "cancellation_reason"),
        key=lambda row: str(row[0]),
    )


def test_the_rule_is_validated_field_by_field(estate: Estate) -> None:
    cases = [
        ({"late_fee_kind": "daily", "late_fee_value": "5", "late_fee_grace_days": 3}, {"late_fee_kind"}),
        ({"late_fee_kind": "fixed", "late_fee_value": "0", "late_fee_grace_days": 3}, {"late_fee_value"}),
        ({"late_fee_kind": "percent", "late_fee_value": "100.01", "late_fee_grace_days": 3}, {"late_fee_value"}),
        ({"late_fee_kind": "fixed", "late_fee_value": "5", "late_fee_grace_days": -1}, {"late_fee_grace_days"}),
        ({"late_fee_kind": "fixed", "late_fee_value": "5", "late_fee_grace_days": None}, {"late_fee_grace_days"}),
        ({"late_fee_value": "5"}, {"late_fee_value"}),
        ({"late_fee_grace_days": 3, "amount": "-1"}, {"late_fee_grace_days", "amount"}),
    ]
    for overrides, fields in cases:
        with pytest.raises(ValidationError) as refused:
            estate.wide_bill(**overrides)
        assert set(refused.value.fields) == fields, overrides
    assert not Bill.objects.exists()
    bill = late_bill(estate, late_fee_kind="percent", late_fee_value=Decimal("2.5"), late_fee_grace_days=0)
    bill.refresh_from_db()
    assert (bill.late_fee_kind, bill.late_fee_value, bill.late_fee_grace_days) == ("percent", Decimal("2.50"), 0)


@pytest.mark.parametrize(
    ("amount", "kind", "value", "fee"),
    [
        ("15000.00", "fixed", "500.00", "500.00"),
        ("15000.00", "percent", "2.5", "375.00"),
        ("333.33", "percent", "1.5", "5.00"),  # 4.99995, half up
        ("0.10", "percent", "1", "0.00"),
    ],
)
def test_the_fee_amount(amount: str, kind: str, value: str, fee: str) -> None:
    bill = Bill(amount=Decimal(amount), late_fee_kind=kind, late_fee_value=Decimal(value))
    assert late_fee_amount(bill) == Decimal(fee)


def test_fees_go_once_to_each_member_who_owes_the_bill_after_the_grace_period() -> None:
    estate = make_estate(residents=5)
    payer, disputer, waived, acknowledged, silent = estate.residents
    bill = late_bill(estate)
    estate.fund(payer, "15000.00")
    from levy.billing.services import bill_acknowledge

    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
    bill_acknowledge(access=access(acknowledged), bill=bill)
    bill_dispute(access=access(disputer), bill=bill, reason="Not mine")
    upheld = bill_dispute(access=access(waived), bill=bill, reason="Moved out")
    dispute_resolve(access=access(estate.admin), dispute=upheld, resolution="upheld", note="Agreed")
    other = late_bill(estate, title="No rule", late_fee_kind="", late_fee_value=None, late_fee_grace_days=None)

    last_day_of_grace = DUE + datetime.timedelta(days=3)
    assert late_fees_issue_due(last_day_of_grace) == {"date": last_day_of_grace.isoformat(), "bills": 0, "fees": 0}
    day = last_day_of_grace + datetime.timedelta(days=1)
    assert late_fees_issue_due(day) == {"date": day.isoformat(), "bills": 1, "fees": 2}

    fees = Bill.objects.filter(late_fee_of=bill).order_by("reference")
    assert sorted(fees.values_list("user_id", flat=True), key=str) == sorted(
        [acknowledged.user_id, silent.user_id], key=str
    )
    for fee in fees:
        assert (fee.amount, fee.category, fee.allow_payment_after_due, fee.created_by_id) == (
            Decimal("500.00"),
            bill.category,
            True,
            bill.created_by_id,
        )
        assert fee.due_date == day + datetime.timedelta(days=14)
        assert fee.title == f"Late fee: {bill.title}"
        assert fee.reference.startswith(f"{bill.reference}-L")
        assert (fee.late_fee_kind, fee.late_fee_of_id, fee.late_fees_issued_at) == ("", bill.pk, None)
        assert fee.status_for(fee.user) == BillStatus.PENDING
    assert len({fee.reference for fee in fees}) == 2
    bill.refresh_from_db()
    assert bill.late_fees_issued_at is not None
    assert not Bill.objects.filter(late_fee_of=other).exists()
    assert counters_drift(Bill.objects.all()) == []  # each fee's counter rows, written by the same statement

    # One intent for the run, resolved to exactly the members holding a fee.
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:late-fees:bill:{bill.pk}")
    assert (intent.event, intent.recipients["kind"]) == ("PAYMENT_DUE", "bill_late_fees")
    assert (intent.context["bill_title"], intent.context["amount"], intent.context["late_fee_of_id"]) == (
        f"Late fee: {bill.title}",
        "500.00",
        str(bill.pk),
    )
    members = Recipients.from_json(intent.recipients).memberships(estate.cluster.pk)
    assert set(members.values_list("user_id", flat=True)) == {acknowledged.user_id, silent.user_id}
    assert AuditEvent.objects.get(action="bill.late_fees", target_id=str(bill.pk)).data == {
        "issued": 2,
        "amount": "500.00",
        "grace_days": 3,
    }

    # Exactly once: a second run finds the bill done; a direct re-insert finds every fee.
    assert late_fees_issue_due(day + datetime.timedelta(days=30))["fees"] == 0
    assert _insert_late_fees(bill, today=day) == 0
    fee = fees.first()
    assert fee is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        Bill.objects.create(
            cluster=estate.cluster,
            reference="BILL-COPY",
            title="copy",
            category="other",
            amount=Decimal("1.00"),
            due_date=DUE,
            user_id=fee.user_id,
            created_by_id=fee.created_by_id,
            late_fee_of=bill,
        )
    assert Bill.objects.filter(late_fee_of=bill).count() == 2


def test_no_fees_on_a_cancelled_bill_and_cancelling_later_cancels_them(estate: Estate) -> None:
    cancelled = late_bill(estate, title="Cancelled first")
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="Issued twice")
    bill = late_bill(estate)
    day = DUE + datetime.timedelta(days=4)
    assert late_fees_issue_due(day) == {"date": day.isoformat(), "bills": 1, "fees": 3}
    assert not Bill.objects.filter(late_fee_of=cancelled).exists()

    bill_cancel(access=access(estate.admin), bill=bill, reason="Wrong amount")
    assert {row[2] for row in fees_of(bill)} == {f"{bill.reference} was cancelled: Wrong amount"}
    assert not Bill.objects.filter(late_fee_of=bill, cancelled_at__isnull=True).exists()


def test_a_user_specific_bill_charges_its_member_only(estate: Estate) -> None:
    member = estate.residents[1]
    bill = estate.user_bill(
        member,
        amount=Decimal("8000.00"),
        due_date=DUE,
        late_fee_kind="percent",
        late_fee_value=Decimal("10"),
        late_fee_grace_days=0,
    )
    assert late_fees_issue_due(DUE + datetime.timedelta(days=1))["fees"] == 1
    assert fees_of(bill) == [(member.user_id, Decimal("800.00"), "")]


def test_a_dispute_resolved_after_the_fees_decides_the_members_fee(estate: Estate) -> None:
    rejected_member, upheld_member, fee_disputer = estate.residents
    bill = late_bill(estate)
    to_reject = bill_dispute(access=access(rejected_member), bill=bill, reason="Not mine")
    to_uphold = bill_dispute(access=access(upheld_member), bill=bill, reason="Moved out")
    assert late_fees_issue_due(DUE + datetime.timedelta(days=4))["fees"] == 1  # disputers skipped
    fee = Bill.objects.get(late_fee_of=bill)
    assert fee.user_id == fee_disputer.user_id

    dispute_resolve(access=access(estate.admin), dispute=to_reject, resolution="rejected", note="It is yours")
    charged = Bill.objects.get(late_fee_of=bill, user_id=rejected_member.user_id)
    assert charged.amount == Decimal("500.00")
    assert NotificationIntent.objects.filter(
        event_key=f"PAYMENT_DUE:late-fees:bill:{bill.pk}:member:{rejected_member.user_id}",
        recipients__kind="users",
    ).exists()

    # The member who still had no fee: upheld, nothing to waive, nothing charged.
    dispute_resolve(access=access(estate.admin), dispute=to_uphold, resolution="upheld", note="Agreed")
    assert not Bill.objects.filter(late_fee_of=bill, user_id=upheld_member.user_id).exists()

    # A member charged the fee disputes the bill afterwards; upheld, the fee is waived.
    later = bill_dispute(access=access(fee_disputer), bill=bill, reason="I paid cash to the chairman")
    dispute_resolve(access=access(estate.admin), dispute=later, resolution="upheld", note="Receipt seen")
    waiver = BillDispute.objects.get(bill=fee, user_id=fee_disputer.user_id)
    assert (waiver.status, waiver.resolved_by_id, waiver.resolution_note) == (
        "upheld",
        estate.admin.user_id,
        "Receipt seen",
    )
    assert fee.status_for(fee_disputer.user) == BillStatus.WAIVED
    assert AuditEvent.objects.filter(action="bill.late_fee_waive", target_id=str(fee.pk)).count() == 1
    assert counters_drift(Bill.objects.all()) == []


def test_an_open_dispute_on_the_fee_becomes_the_waiver(estate: Estate) -> None:
    member = estate.residents[0]
    bill = late_bill(estate)
    late_fees_issue_due(DUE + datetime.timedelta(days=4))
    fee = Bill.objects.get(late_fee_of=bill, user_id=member.user_id)
    on_fee = bill_dispute(access=access(member), bill=fee, reason="The fee is unfair")
    on_bill = bill_dispute(access=access(member), bill=bill, reason="So is the bill")
    dispute_resolve(access=access(estate.admin), dispute=on_bill, resolution="upheld", note="Agreed")
    on_fee.refresh_from_db()
    assert (on_fee.status, on_fee.resolution_note) == ("upheld", "Agreed")
    assert BillDispute.objects.filter(bill=fee).count() == 1
    assert fee.status_for(member.user) == BillStatus.WAIVED
    assert counters_drift(Bill.objects.all()) == []
