"""Separation of duties and membership (issue 15, items 4, 5 and 7), over HTTP: staff
never record money into their own wallet, an estate always keeps an admin, and adding
an existing account reveals nothing the caller did not type — the person is told, and
may leave."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from levy.audit.models import AuditEvent
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.common.errors import RuleViolation
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.notifications.events import NotificationEvents
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, TransactionType
from levy.wallets.rules import own_wallet_refusal
from tests.api.conftest import api_as, assert_error, base
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, make_estate, new_key
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def credit(estate: Estate, caller: Membership, member: Membership, amount: str = "5000.00") -> object:
    return api_as(caller).post(
        f"{base(estate)}/management/wallets/{member.user_id}/credit/",
        {"amount": amount, "note": "cash at the gate"},
        key=new_key("credit"),
    )


# --- item 4: no money into one's own wallet -------------------------------------------------------


@pytest.mark.parametrize("role", ["treasurer", "admin"])
def test_staff_cannot_credit_their_own_wallet(estate: Estate, role: str) -> None:
    me = estate.treasurer if role == "treasurer" else estate.admin
    before = db_snapshot()
    response = credit(estate, me, me)
    body = assert_error(response, 409, "self_credit_not_allowed")
    assert body["error"]["message"] == (
        "You cannot record money received into your own wallet. Another member of staff must record it."
    )
    # Nothing moved; the refusal is kept against its idempotency key, so that a retry
    # with the same key answers the same 409.
    after = db_snapshot()
    assert [r[2] for r in after.pop("idempotency_records").values()] == [409]
    before.pop("idempotency_records")
    assert after == before
    # Another member of staff records it.
    other = estate.admin if role == "treasurer" else estate.treasurer
    recorded = credit(estate, other, me)
    assert recorded.status_code == 201, recorded.content
    assert Transaction.objects.get(payer=me.user, type=TransactionType.DEPOSIT).initiated_by_id == other.user_id


def test_staff_cannot_refund_a_payment_to_themselves(estate: Estate) -> None:
    # A treasurer who lives in the estate pays its bill; the bill is then cancelled.
    me = estate.add(role=Role.TREASURER, is_resident=True)
    bill = estate.wide_bill(amount=Decimal("100.00"))
    estate.fund(me, "100.00")
    from levy.billing.services import bill_acknowledge, bill_cancel

    bill_acknowledge(access=access(me), bill=bill)
    payment = bill_pay(access=access(me), bill=bill, idempotency_key=new_key())
    bill_cancel(access=access(estate.admin), bill=bill, reason="issued twice")
    before = db_snapshot()
    with pytest.raises(RuleViolation) as refused:
        bill_payment_refund(access=access(me), payment=payment, idempotency_key=new_key(), note="mine")
    assert refused.value.code == "self_refund_not_allowed"
    assert db_snapshot() == before
    refund = bill_payment_refund(access=access(estate.admin), payment=payment, idempotency_key=new_key())
    assert (refund.amount, refund.payer_id) == (Decimal("100.00"), me.user_id)


def test_the_rule_is_one_function_for_credits_and_refunds(estate: Estate) -> None:
    me = access(estate.treasurer)
    assert own_wallet_refusal(access=me, member_user_id=estate.residents[0].user_id, action="credit") is None
    refusal = own_wallet_refusal(access=me, member_user_id=str(estate.treasurer.user_id), action="refund")
    assert refusal is not None
    assert refusal.code == "self_refund_not_allowed"


# --- item 7: the last admin ----------------------------------------------------------------------


@pytest.mark.parametrize("change", [{"role": "treasurer"}, {"role": "resident"}, {"active": False}])
def test_the_last_admin_cannot_demote_or_deactivate_themselves(estate: Estate, change: dict[str, object]) -> None:
    path = f"{base(estate)}/management/members/{estate.admin.user_id}/"
    before = db_snapshot()
    body = assert_error(api_as(estate.admin).patch(path, change), 409, "last_admin")
    assert body["error"]["message"] == "The estate would have no admin left. Make another member admin first."
    assert db_snapshot() == before


def test_the_platform_operator_cannot_remove_the_last_admin_either(estate: Estate) -> None:
    operator = UserFactory(is_superuser=True, is_staff=True)
    path = f"{base(estate)}/management/members/{estate.admin.user_id}/"
    before = db_snapshot()
    assert_error(api_as(operator).patch(path, {"active": False}), 409, "last_admin")
    assert db_snapshot() == before


def test_with_another_active_admin_an_admin_may_step_down(estate: Estate) -> None:
    second = estate.add(role=Role.ADMIN)
    path = f"{base(estate)}/management/members/{estate.admin.user_id}/"
    stepped_down = api_as(estate.admin).patch(path, {"role": "treasurer"})
    assert stepped_down.status_code == 200, stepped_down.content
    assert stepped_down.json()["role"] == "treasurer"
    # Now the second admin is the last one.
    own = f"{base(estate)}/management/members/{second.user_id}/"
    assert_error(api_as(second).patch(own, {"role": "resident"}), 409, "last_admin")
    assert_error(api_as(second).post(f"{base(estate)}/leave/"), 409, "last_admin")


def test_a_deactivated_admin_does_not_count(estate: Estate) -> None:
    estate.add(role=Role.ADMIN, active=False, deactivated_at=timezone.now())
    path = f"{base(estate)}/management/members/{estate.admin.user_id}/"
    assert_error(api_as(estate.admin).patch(path, {"role": "resident"}), 409, "last_admin")


# --- item 5: adding an existing account, and leaving ------------------------------------------------


def test_adding_another_estates_admin_reveals_nothing_and_tells_them(estate: Estate) -> None:
    elsewhere = make_estate(residents=0)
    person = elsewhere.admin.user
    person.name = "Chief Adaeze Okafor"
    person.save(update_fields=["name"])
    response = api_as(estate.admin).post(
        f"{base(estate)}/management/members/", {"email": person.email.upper(), "name": "Whoever", "role": "resident"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Whoever"
    assert body["email"] == person.email
    assert "Adaeze" not in response.content.decode()
    # The person is told, in their inbox (and by email: a high-priority event).
    note = Notification.objects.get(recipient=person, event=NotificationEvents.MEMBERSHIP_ADDED)
    assert note.cluster_id == estate.cluster.pk
    assert note.title == f"You were added to {estate.cluster.name}"
    assert f"/api/v1/clusters/{estate.cluster.pk}/leave/" in note.body
    assert note.priority == "high"
    # A new person is told too.
    api_as(estate.admin).post(f"{base(estate)}/management/members/", {"email": "fresh@example.test", "name": "Fresh"})
    assert (
        Notification.objects.filter(
            recipient__email="fresh@example.test", event=NotificationEvents.MEMBERSHIP_ADDED
        ).count()
        == 1
    )


def test_a_member_leaves_the_estate(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "700.00")
    left = api_as(me).post(f"{base(estate)}/leave/")
    assert left.status_code == 200, left.content
    body = left.json()
    assert (body["cluster_id"], body["active"]) == (str(estate.cluster.pk), False)
    membership = Membership.objects.get(pk=me.pk)
    assert membership.active is False
    assert membership.deactivated_at is not None
    event = AuditEvent.objects.get(action="member.leave")
    assert (event.actor_id, event.cluster_id) == (me.user_id, estate.cluster.pk)
    # Out of the estate: its pages are 404 to them, the wallet stays on the ledger.
    assert_error(api_as(me).get(f"{base(estate)}/bills/"), 404, "not_found")
    assert_error(api_as(me).post(f"{base(estate)}/leave/"), 404, "not_found")
    assert Transaction.objects.filter(payer=me.user).count() == 1
    # Other members are untouched.
    assert Membership.objects.filter(cluster=estate.cluster, active=True).count() == 5


def test_leaving_needs_a_membership(estate: Estate, other_estate: Estate) -> None:
    before = db_snapshot()
    assert_error(api_as(None).post(f"{base(estate)}/leave/"), 401, "not_authenticated")
    assert_error(api_as(other_estate.admin).post(f"{base(estate)}/leave/"), 404, "not_found")
    assert db_snapshot() == before
