"""The billing rules of product.md, on the real database."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone

from levy.access import access_bill_as_member, access_bill_as_staff, access_dispute
from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillAcknowledgement, BillDispute
from levy.billing.payments import bill_pay
from levy.billing.selectors import (
    bill_audience,
    estate_today,
    member_bills,
)
from levy.billing.services import (
    bill_acknowledge,
    bill_cancel,
    bill_create_cluster_wide,
    bill_create_user_specific,
    bill_dispute,
    bill_update,
    dispute_resolve,
)
from levy.billing.status import BillStatus
from levy.common.errors import NotFoundError, PermissionDeniedError, RuleViolation, ValidationError
from levy.common.origin import Origin
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.notifications.models import Notification
from levy.wallets.models import Transaction
from tests.conftest import Estate, access, bill_input, committed, make_estate, new_key

pytestmark = pytest.mark.django_db


class _RaisesCode:
    """``with raises_code("bill_cancelled"):`` — a RuleViolation with that exact code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert exc is not None, f"expected RuleViolation({self.code}), nothing was raised"
        assert isinstance(exc, RuleViolation), f"expected RuleViolation, got {exc!r}"
        assert exc.code == self.code
        return True


def raises_code(code: str) -> _RaisesCode:
    return _RaisesCode(code)


# --- creation -----------------------------------------------------------------------------


def test_estate_wide_bill_is_one_row_whatever_the_member_count() -> None:
    estate = make_estate(residents=40)
    bill = estate.wide_bill()
    assert Bill.objects.filter(cluster=estate.cluster).count() == 1
    assert bill.is_cluster_wide()
    assert bill_audience(bill).count() == 40
    assert Notification.objects.filter(event="PAYMENT_DUE", event_key=f"PAYMENT_DUE:bill:{bill.pk}").count() == 40


def test_estate_wide_bill_applies_to_resident_members_who_joined_before_it(estate: Estate) -> None:
    committee = estate.add(role=Role.ADMIN, is_resident=True)
    bill = estate.wide_bill()
    late = estate.add(joined_at=timezone.now() + datetime.timedelta(seconds=1))
    audience = set(bill_audience(bill).values_list("user_id", flat=True))
    assert audience == {m.user_id for m in estate.residents} | {committee.user_id}
    # staff who don't live in the estate are not billed
    for staff in (estate.admin, estate.treasurer, estate.auditor):
        assert not bill.applies_to(staff.user)
    # a member who joined after the bill does not owe it, see it, or act on it
    assert not bill.applies_to(late.user)
    assert list(member_bills(membership=late)) == []
    with pytest.raises(NotFoundError):
        access_bill_as_member(access(late), bill.pk)
    with pytest.raises(NotFoundError):
        bill_acknowledge(access=access(late), bill=bill)
    estate.fund(late, "50000.00")
    with pytest.raises(NotFoundError):
        bill_pay(access=access(late), bill=bill, idempotency_key=new_key())
    assert not Notification.objects.filter(recipient=late.user).exists()


def test_deactivated_member_is_no_longer_billed(estate: Estate) -> None:
    gone = estate.residents[0]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    bill = estate.wide_bill()
    assert not bill.applies_to(gone.user)
    assert bill_audience(bill).count() == 2


def test_bill_references_are_sequential_per_estate(estate: Estate, other_estate: Estate) -> None:
    first = estate.wide_bill()
    second = estate.user_bill(estate.residents[0])
    elsewhere = other_estate.wide_bill()
    year = timezone.localtime(first.created_at).year
    assert [first.reference, second.reference] == [f"BILL-{year}-000001", f"BILL-{year}-000002"]
    assert elsewhere.reference == f"BILL-{year}-000001"


def test_user_specific_bill_reaches_and_shows_to_its_user_only(estate: Estate) -> None:
    target, other = estate.residents[0], estate.residents[1]
    bill = estate.user_bill(target)
    assert not bill.is_cluster_wide()
    assert list(bill_audience(bill).values_list("user_id", flat=True)) == [target.user_id]
    assert access_bill_as_member(access(target), bill.pk) == bill
    with pytest.raises(NotFoundError):
        access_bill_as_member(access(other), bill.pk)
    with pytest.raises(NotFoundError):
        bill_acknowledge(access=access(other), bill=bill)
    with pytest.raises(NotFoundError):
        bill_dispute(access=access(other), bill=bill, reason="not mine")
    assert list(Notification.objects.filter(event="PAYMENT_DUE").values_list("recipient_id", flat=True)) == [
        target.user_id
    ]
    assert [b.pk for b in member_bills(membership=other)] == []


@pytest.mark.parametrize("who", ["stranger", "other_estate", "staff", "inactive"])
def test_user_specific_bill_target_must_be_an_active_resident_member(
    estate: Estate, other_estate: Estate, who: str
) -> None:
    from tests.factories import UserFactory

    target = {
        "stranger": lambda: UserFactory(),
        "other_estate": lambda: other_estate.residents[0].user,
        "staff": lambda: estate.auditor.user,
        "inactive": lambda: estate.add(active=False, deactivated_at=timezone.now()).user,
    }[who]()
    with pytest.raises(ValidationError) as err:
        bill_create_user_specific(access=access(estate.admin), user_id=target.pk, data=bill_input())
    assert list(err.value.fields) == ["user_id"]
    assert Bill.objects.count() == 0
    bill = Bill(cluster=estate.cluster, user=target, amount=Decimal("1.00"), due_date=estate_today())
    with pytest.raises(DjangoValidationError) as model_err:
        bill.clean()
    assert "user" in model_err.value.message_dict


def test_model_validation_refuses_a_non_positive_amount(estate: Estate) -> None:
    with pytest.raises(DjangoValidationError) as err:
        Bill(cluster=estate.cluster, amount=Decimal("0.00"), due_date=estate_today()).clean()
    assert "amount" in err.value.message_dict


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": "  "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"category": "parking"}, "category"),
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("-5.00")}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "1000000000000.00"}, "amount"),
        ({"due_date": "2030-01-01"}, "due_date"),
        ({"due_date": datetime.date(2020, 1, 1)}, "due_date"),
    ],
)
def test_bill_input_is_validated_field_by_field(estate: Estate, overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        estate.wide_bill(**overrides)
    assert list(err.value.fields) == [field]
    assert Bill.objects.count() == 0
    assert AuditEvent.objects.filter(action="bill.create").count() == 0


@pytest.mark.parametrize(
    ("role", "allowed"), [("admin", True), ("treasurer", True), ("auditor", False), ("resident", False)]
)
def test_who_may_create_bills(estate: Estate, role: str, allowed: bool) -> None:
    member = {"admin": estate.admin, "treasurer": estate.treasurer, "auditor": estate.auditor}.get(
        role, estate.residents[0]
    )
    if allowed:
        bill_create_cluster_wide(access=access(member), data=bill_input())
        assert Bill.objects.count() == 1
    else:
        with pytest.raises(PermissionDeniedError):
            bill_create_cluster_wide(access=access(member), data=bill_input())
        assert Bill.objects.count() == 0
        assert Notification.objects.count() == 0


def test_bill_creation_is_audited(estate: Estate) -> None:
    bill = estate.wide_bill()
    event = AuditEvent.objects.get(action="bill.create")
    assert (event.actor_id, event.cluster_id, event.target_id) == (
        estate.admin.user_id,
        estate.cluster.pk,
        str(bill.pk),
    )
    assert event.data["amount"] == "15000.00"


# --- acknowledgement ------------------------------------------------------------------------


def test_acknowledgement_records_when_and_from_where_once(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    origin = Origin(ip="203.0.113.9", user_agent="LevyApp/1.0")
    with committed():
        ack, created = bill_acknowledge(access=access(member), bill=bill, origin=origin)
    assert created
    assert (ack.ip_address, ack.user_agent) == ("203.0.113.9", "LevyApp/1.0")
    with committed():
        again, created_again = bill_acknowledge(access=access(member), bill=bill, origin=Origin(ip="198.51.100.1"))
    assert not created_again
    assert again.pk == ack.pk
    assert again.ip_address == "203.0.113.9"
    assert BillAcknowledgement.objects.filter(bill=bill).count() == 1
    assert list(bill.acknowledged_by.all()) == [member.user]
    assert AuditEvent.objects.filter(action="bill.acknowledge").count() == 1
    assert bill.status_for(member.user) == BillStatus.ACKNOWLEDGED
    # ManageBill holders (admin, treasurer) hear of it once; the auditor and residents don't
    recipients = set(Notification.objects.filter(event="BILL_ACKNOWLEDGED").values_list("recipient_id", flat=True))
    assert recipients == {estate.admin.user_id, estate.treasurer.user_id}
    assert Notification.objects.filter(event="BILL_ACKNOWLEDGED").count() == 2


def test_cancelled_bill_cannot_be_acknowledged_disputed_or_paid(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    estate.fund(member, "20000.00")
    bill_acknowledge(access=access(member), bill=bill)
    bill_cancel(access=access(estate.admin), bill=bill, reason="issued twice")
    bill.refresh_from_db()
    other = estate.residents[1]
    assert not bill.can_be_acknowledged_by(other.user)
    with raises_code("bill_cancelled"):
        bill_acknowledge(access=access(other), bill=bill)
    with raises_code("bill_cancelled"):
        bill_dispute(access=access(other), bill=bill, reason="x")
    with raises_code("bill_cancelled"):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    assert bill.status_for(member.user) == BillStatus.CANCELLED
    assert Transaction.objects.filter(type="bill_payment").count() == 0


# --- disputes -------------------------------------------------------------------------------


def test_dispute_blocks_payment_and_alerts_managers_with_high_priority(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    estate.fund(member, "20000.00")
    bill_acknowledge(access=access(member), bill=bill)
    with committed():
        dispute = bill_dispute(access=access(member), bill=bill, reason="  I moved out in October  ")
    assert (dispute.status, dispute.reason) == ("open", "I moved out in October")
    assert bill.status_for(member.user) == BillStatus.DISPUTED
    assert not bill.can_be_paid_by(member.user)
    with raises_code("bill_disputed"):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    with raises_code("dispute_already_open"):
        bill_dispute(access=access(member), bill=bill, reason="again")
    alerts = Notification.objects.filter(event="BILL_DISPUTED")
    assert {n.recipient_id for n in alerts} == {estate.admin.user_id, estate.treasurer.user_id}
    assert {n.priority for n in alerts} == {"high"}
    assert alerts[0].context["reason"] == "I moved out in October"
    assert BillDispute.objects.count() == 1


def test_dispute_needs_a_reason(estate: Estate) -> None:
    bill = estate.wide_bill()
    with pytest.raises(ValidationError) as err:
        bill_dispute(access=access(estate.residents[0]), bill=bill, reason="   ")
    assert list(err.value.fields) == ["reason"]


def test_paid_bill_cannot_be_disputed(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    estate.fund(member, "15000.00")
    bill_acknowledge(access=access(member), bill=bill)
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    with raises_code("bill_already_paid"):
        bill_dispute(access=access(member), bill=bill, reason="changed my mind")


def test_upheld_dispute_waives_the_bill_for_that_member_only(estate: Estate) -> None:
    bill = estate.wide_bill()
    member, neighbour = estate.residents[0], estate.residents[1]
    estate.fund(member, "20000.00")
    bill_acknowledge(access=access(member), bill=bill)
    dispute = bill_dispute(access=access(member), bill=bill, reason="wrong flat")
    with committed():
        resolved = dispute_resolve(
            access=access(estate.treasurer), dispute=dispute, resolution="upheld", note="confirmed"
        )
    assert (resolved.status, resolved.resolved_by_id, resolved.resolution_note) == (
        "upheld",
        estate.treasurer.user_id,
        "confirmed",
    )
    assert resolved.resolved_at is not None
    assert bill.status_for(member.user) == BillStatus.WAIVED
    assert bill.status_for(neighbour.user) == BillStatus.PENDING
    with raises_code("bill_waived"):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    with raises_code("bill_waived"):
        bill_dispute(access=access(member), bill=bill, reason="again")
    with raises_code("dispute_already_resolved"):
        dispute_resolve(access=access(estate.admin), dispute=dispute, resolution="rejected", note="no")
    note = Notification.objects.get(event="DISPUTE_RESOLVED")
    assert (note.recipient_id, note.context["resolution"]) == (member.user_id, "upheld")


def test_rejected_dispute_leaves_the_bill_owed(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    estate.fund(member, "20000.00")
    bill_acknowledge(access=access(member), bill=bill)
    dispute = bill_dispute(access=access(member), bill=bill, reason="too high")
    dispute_resolve(access=access(estate.admin), dispute=dispute, resolution="rejected", note="approved budget")
    assert bill.status_for(member.user) == BillStatus.ACKNOWLEDGED
    tx = bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    assert tx.status == "completed"
    assert bill.status_for(member.user) == BillStatus.PAID


def test_a_member_may_dispute_again_after_a_rejection(estate: Estate) -> None:
    bill = estate.wide_bill()
    member = estate.residents[0]
    first = bill_dispute(access=access(member), bill=bill, reason="too high")
    dispute_resolve(access=access(estate.admin), dispute=first, resolution="rejected", note="no")
    second = bill_dispute(access=access(member), bill=bill, reason="new evidence")
    assert second.status == "open"
    assert BillDispute.objects.filter(bill=bill, user=member.user).count() == 2


@pytest.mark.parametrize(("resolution", "note", "field"), [("maybe", "x", "resolution"), ("upheld", "", "note")])
def test_resolution_input_is_validated(estate: Estate, resolution: str, note: str, field: str) -> None:
    bill = estate.wide_bill()
    dispute = bill_dispute(access=access(estate.residents[0]), bill=bill, reason="x")
    with pytest.raises(ValidationError) as err:
        dispute_resolve(access=access(estate.admin), dispute=dispute, resolution=resolution, note=note)
    assert list(err.value.fields) == [field]
    dispute.refresh_from_db()
    assert dispute.status == "open"


@pytest.mark.parametrize("role", ["auditor", "resident"])
def test_only_bill_managers_resolve_disputes(estate: Estate, role: str) -> None:
    bill = estate.wide_bill()
    dispute = bill_dispute(access=access(estate.residents[0]), bill=bill, reason="x")
    member = estate.auditor if role == "auditor" else estate.residents[1]
    with pytest.raises(PermissionDeniedError):
        dispute_resolve(access=access(member), dispute=dispute, resolution="upheld", note="x")
    dispute.refresh_from_db()
    assert dispute.status == "open"


def test_disputes_are_found_only_in_their_estate(estate: Estate, other_estate: Estate) -> None:
    bill = estate.wide_bill()
    dispute = bill_dispute(access=access(estate.residents[0]), bill=bill, reason="x")
    assert access_dispute(access(estate.auditor), dispute.pk) == dispute
    with pytest.raises(NotFoundError):
        access_dispute(access(other_estate.admin), dispute.pk)
    with pytest.raises(PermissionDeniedError):
        access_dispute(access(estate.residents[1]), dispute.pk)


# --- cancellation ---------------------------------------------------------------------------


def test_cancellation_records_who_when_why_and_notifies_those_who_had_not_paid(estate: Estate) -> None:
    bill = estate.wide_bill()
    payer = estate.residents[0]
    estate.fund(payer, "15000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    payment = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())
    with committed():
        cancelled = bill_cancel(access=access(estate.admin), bill=bill, reason="wrong amount")
    assert (cancelled.cancelled_by_id, cancelled.cancellation_reason) == (estate.admin.user_id, "wrong amount")
    assert cancelled.cancelled_at is not None
    recipients = set(Notification.objects.filter(event="BILL_CANCELLED").values_list("recipient_id", flat=True))
    assert recipients == {estate.residents[1].user_id, estate.residents[2].user_id}
    # the payment stays on the ledger, unchanged
    payment.refresh_from_db()
    assert (payment.status, payment.amount) == ("completed", Decimal("-15000.00"))
    with raises_code("bill_cancelled"):
        bill_cancel(access=access(estate.admin), bill=bill, reason="again")


def test_cancellation_needs_a_reason_and_the_permission(estate: Estate) -> None:
    bill = estate.wide_bill()
    with pytest.raises(ValidationError):
        bill_cancel(access=access(estate.admin), bill=bill, reason="")
    with pytest.raises(PermissionDeniedError):
        bill_cancel(access=access(estate.auditor), bill=bill, reason="x")
    bill.refresh_from_db()
    assert bill.cancelled_at is None


# --- edits and frozen terms ------------------------------------------------------------------


def test_terms_can_change_until_the_first_acknowledgement(estate: Estate) -> None:
    bill = estate.wide_bill()
    new_due = estate_today() + datetime.timedelta(days=30)
    updated = bill_update(
        access=access(estate.admin),
        bill=bill,
        changes={"amount": "12000.00", "due_date": new_due, "allow_payment_after_due": True},
    )
    assert (updated.amount, updated.due_date, updated.allow_payment_after_due) == (Decimal("12000.00"), new_due, True)
    event = AuditEvent.objects.get(action="bill.update")
    assert event.data["before"]["amount"] == "15000.00"
    assert event.data["after"]["amount"] == "12000.00"
    bill_acknowledge(access=access(estate.residents[0]), bill=bill)
    with raises_code("bill_terms_locked"):
        bill_update(access=access(estate.admin), bill=bill, changes={"amount": "1.00"})
    with raises_code("bill_terms_locked"):
        bill_update(access=access(estate.admin), bill=bill, changes={"user_id": estate.residents[1].user_id})
    # title and description may still change
    retitled = bill_update(access=access(estate.admin), bill=bill, changes={"title": "Service charge (Nov)"})
    assert retitled.title == "Service charge (Nov)"
    bill.refresh_from_db()
    assert bill.amount == Decimal("12000.00")


def test_an_unchanged_past_due_date_is_not_an_error_on_edit(estate: Estate) -> None:
    bill = estate.wide_bill()
    Bill.objects.filter(pk=bill.pk).update(due_date=estate_today() - datetime.timedelta(days=3))
    bill.refresh_from_db()
    updated = bill_update(access=access(estate.admin), bill=bill, changes={"description": "late notice"})
    assert updated.description == "late notice"


def test_edit_input_is_validated(estate: Estate, other_estate: Estate) -> None:
    bill = estate.wide_bill()
    with pytest.raises(ValidationError) as err:
        bill_update(access=access(estate.admin), bill=bill, changes={"reference": "X"})
    assert list(err.value.fields) == ["reference"]
    with pytest.raises(ValidationError) as err:
        bill_update(access=access(estate.admin), bill=bill, changes={"user_id": other_estate.residents[0].user_id})
    assert list(err.value.fields) == ["user_id"]
    with pytest.raises(PermissionDeniedError):
        bill_update(access=access(estate.residents[0]), bill=bill, changes={"title": "x"})
    bill_cancel(access=access(estate.admin), bill=bill, reason="x")
    with raises_code("bill_cancelled"):
        bill_update(access=access(estate.admin), bill=bill, changes={"title": "x"})


def test_an_estate_wide_bill_can_be_retargeted_before_acknowledgement(estate: Estate) -> None:
    bill = estate.wide_bill()
    target = estate.residents[2]
    updated = bill_update(access=access(estate.admin), bill=bill, changes={"user_id": target.user_id})
    assert not updated.is_cluster_wide()
    assert list(bill_audience(updated).values_list("user_id", flat=True)) == [target.user_id]


def test_staff_see_every_bill_of_their_estate_and_none_of_another(estate: Estate, other_estate: Estate) -> None:
    bill = estate.user_bill(estate.residents[0])
    assert access_bill_as_staff(access(estate.auditor), bill.pk) == bill
    with pytest.raises(NotFoundError):
        access_bill_as_staff(access(other_estate.admin), bill.pk)
    with pytest.raises(PermissionDeniedError):
        access_bill_as_staff(access(estate.residents[1]), bill.pk)
    with pytest.raises(NotFoundError):
        access_bill_as_staff(access(estate.auditor), "not-a-uuid")
