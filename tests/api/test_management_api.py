"""The management endpoints of api.md over real HTTP requests (DRF ``APIClient``).

Every row of the "Management" table: the success case with its exact status, field
names and values (amounts as decimal strings, the estate's currency alongside), each
error code the endpoint can answer with, and the database state afterwards.
"""

from __future__ import annotations

import base64
import datetime
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from levy.accounts.models import User
from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillDispute
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute, dispute_resolve
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, Wallet
from tests.api.conftest import api_as, assert_error, make_past_due, walk
from tests.conftest import Estate, access, make_estate, new_key
from tests.factories import ClusterFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

MEMBER_FIELDS = {"id", "email", "name", "role", "is_resident", "joined_at"}
SUMMARY_FIELDS = {
    "outstanding_count",
    "outstanding_amount",
    "overdue_count",
    "unacknowledged_count",
    "disputed_count",
    "paid_count",
}
BILL_FIELDS = {
    "id",
    "reference",
    "title",
    "category",
    "amount",
    "currency",
    "due_date",
    "allow_payment_after_due",
    "is_cluster_wide",
    "user_id",
    "cancelled_at",
    "created_at",
    "stats",
}
STATS_FIELDS = {"eligible", "acknowledged", "paid", "disputed", "waived", "overdue", "outstanding", "collected_amount"}
TRANSACTION_FIELDS = {
    "id",
    "reference",
    "type",
    "status",
    "amount",
    "currency",
    "balance_after",
    "bill_id",
    "user_id",
    "initiated_by_id",
    "failure_reason",
    "note",
    "retry_of_id",
    "reverses_id",
    "created_at",
}


# --- helpers ---------------------------------------------------------------------------------


def mgmt(estate: Estate) -> str:
    return f"/api/v1/clusters/{estate.cluster.pk}/management"


def due(days: int = 14) -> str:
    return (estate_today() + datetime.timedelta(days=days)).isoformat()


def ids(rows: list[dict[str, Any]], key: str = "id") -> list[str]:
    return [row[key] for row in rows]


def pay(member: Membership, bill: Bill) -> Transaction:
    return bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))


def csv_upload(text: str | bytes, name: str = "members.csv") -> SimpleUploadedFile:
    content = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, content, content_type="text/csv")


# --- members: add ------------------------------------------------------------------------------


def test_add_member_creates_the_user_membership_and_wallet(estate: Estate) -> None:
    response = api_as(estate.admin).post(
        f"{mgmt(estate)}/members/",
        {"email": "  New.Person@Example.TEST ", "name": "New Person", "role": "resident", "password": "s3cret-pass!"},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= MEMBER_FIELDS
    assert "password" not in body
    user = User.objects.get(email="new.person@example.test")
    assert body["id"] == str(user.pk)
    assert (body["email"], body["name"], body["role"], body["is_resident"]) == (
        "new.person@example.test",
        "New Person",
        "resident",
        True,
    )
    membership = Membership.objects.get(cluster=estate.cluster, user=user)
    assert membership.active
    assert membership.role == Role.RESIDENT
    assert datetime.datetime.fromisoformat(body["joined_at"]) == membership.joined_at
    assert user.check_password("s3cret-pass!")
    assert Wallet.objects.get(cluster=estate.cluster, user=user).balance == Decimal("0.00")
    event = AuditEvent.objects.get(action="member.add", target_id=str(membership.pk))
    assert event.actor_id == estate.admin.user_id
    assert event.cluster_id == estate.cluster.pk


def test_add_staff_member_is_not_resident_by_default_but_can_be(estate: Estate) -> None:
    admin = api_as(estate.admin)
    staff = admin.post(
        f"{mgmt(estate)}/members/", {"email": "t1@example.test", "name": "Tayo One", "role": "treasurer"}
    )
    assert staff.status_code == 201, staff.json()
    assert (staff.json()["role"], staff.json()["is_resident"]) == ("treasurer", False)
    living = admin.post(
        f"{mgmt(estate)}/members/",
        {"email": "t2@example.test", "name": "Tayo Two", "role": "treasurer", "is_resident": True},
    )
    assert living.status_code == 201, living.json()
    assert living.json()["is_resident"] is True
    user = User.objects.get(email="t1@example.test")
    assert not user.has_usable_password()  # no password sent: the account cannot sign in yet


def test_add_member_reuses_an_existing_user(estate: Estate, other_estate: Estate) -> None:
    person = other_estate.residents[0].user
    users_before = User.objects.count()
    response = api_as(estate.admin).post(
        f"{mgmt(estate)}/members/", {"email": person.email.upper(), "name": "Ignored", "role": "auditor"}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["id"] == str(person.pk)
    # Only what the caller typed comes back: not the name the person chose.
    assert response.json()["name"] == "Ignored"
    assert person.name not in response.content.decode()
    assert User.objects.count() == users_before
    assert Membership.objects.get(cluster=estate.cluster, user=person).role == Role.AUDITOR
    # Roles are per membership: the person is still a resident in the other estate.
    assert Membership.objects.get(cluster=other_estate.cluster, user=person).role == Role.RESIDENT


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "role": "resident"}, "email"),
        ({"role": "resident"}, "email"),
        ({"email": "x@example.test", "role": "landlord"}, "role"),
        ({"email": "x@example.test", "is_resident": "perhaps"}, "is_resident"),
        ({"email": "x@example.test", "password": "short"}, "password"),
        ({"email": "x@example.test", "name": "n" * 201}, "name"),
        ({"email": ["x@example.test"]}, "email"),
    ],
)
def test_add_member_validation(estate: Estate, payload: dict[str, Any], field: str) -> None:
    users, members = User.objects.count(), Membership.objects.count()
    response = api_as(estate.admin).post(f"{mgmt(estate)}/members/", payload)
    assert_error(response, 400, "validation_error", (field,))
    assert (User.objects.count(), Membership.objects.count()) == (users, members)


def test_adding_an_active_member_again_is_a_validation_error(estate: Estate) -> None:
    response = api_as(estate.admin).post(
        f"{mgmt(estate)}/members/", {"email": estate.residents[0].user.email, "name": "Again"}
    )
    assert_error(response, 400, "validation_error", ("email",))
    assert Membership.objects.filter(cluster=estate.cluster).count() == 6


@pytest.mark.parametrize("role", ["treasurer", "auditor", "resident"])
def test_add_member_needs_manage_members(estate: Estate, role: str) -> None:
    caller = {"treasurer": estate.treasurer, "auditor": estate.auditor, "resident": estate.residents[0]}[role]
    response = api_as(caller).post(f"{mgmt(estate)}/members/", {"email": "someone@example.test"})
    assert_error(response, 403, "permission_denied")
    assert not User.objects.filter(email="someone@example.test").exists()


def test_another_estates_admin_gets_404(estate: Estate, other_estate: Estate) -> None:
    response = api_as(other_estate.admin).post(f"{mgmt(estate)}/members/", {"email": "someone@example.test"})
    assert_error(response, 404, "not_found")
    assert not User.objects.filter(email="someone@example.test").exists()


def test_platform_operator_appoints_the_first_admin_of_any_estate(db: None) -> None:
    operator = UserFactory(is_superuser=True, is_staff=True)
    cluster = ClusterFactory()
    path = f"/api/v1/clusters/{cluster.pk}/management"
    response = api_as(operator).post(
        f"{path}/members/", {"email": "first.admin@example.test", "name": "First Admin", "role": "admin"}
    )
    assert response.status_code == 201, response.json()
    assert (response.json()["role"], response.json()["is_resident"]) == ("admin", False)
    admin = Membership.objects.get(cluster=cluster, user__email="first.admin@example.test")
    assert admin.role == Role.ADMIN
    assert AuditEvent.objects.filter(action="member.add", actor=operator, cluster=cluster).count() == 1
    # The operator is not a member and sees no estate's money...
    assert not Membership.objects.filter(user=operator).exists()
    assert_error(api_as(operator).get(f"{path}/members/"), 403, "permission_denied")
    assert_error(api_as(operator).get(f"{path}/dashboard/"), 403, "permission_denied")
    # ...while the admin they appointed runs the estate.
    assert api_as(admin).get(f"{path}/members/").status_code == 200


def test_platform_operator_may_add_members_to_an_estate_that_has_admins(estate: Estate) -> None:
    operator = UserFactory(is_superuser=True)
    response = api_as(operator).post(
        f"{mgmt(estate)}/members/", {"email": "second.admin@example.test", "name": "Second Admin", "role": "admin"}
    )
    assert response.status_code == 201, response.json()
    assert Membership.objects.get(user__email="second.admin@example.test").cluster_id == estate.cluster.pk


# --- members: CSV import -----------------------------------------------------------------------


def import_csv(api: Any, estate: Estate, text: str | bytes) -> Any:
    """Upload a CSV; its job runs when the request's transaction commits."""
    return api.post_multipart(f"{mgmt(estate)}/members/import/", {"file": csv_upload(text)})


def imported(api: Any, estate: Estate, text: str | bytes) -> dict[str, Any]:
    """Upload a CSV and return its import as the status endpoint reports it at the end."""
    response = import_csv(api, estate, text)
    assert response.status_code == 202, response.content
    done = api.get(f"{mgmt(estate)}/members/imports/{response.json()['id']}/")
    assert done.status_code == 200, done.content
    return dict(done.json())


def test_csv_import_creates_new_members_and_skips_existing_ones(estate: Estate) -> None:
    existing = estate.residents[0].user.email
    text = (
        "email,name,role,is_resident\n"
        "ada@example.test,Ada Obi,resident,\n"
        "BOLA@example.test,Bola Ade,treasurer,true\n"
        f"{existing},Already Here,resident,true\n"
        "chi@example.test,Chi Eze,auditor,no\n"
    )
    result = imported(api_as(estate.admin), estate, text)
    assert (result["status"], result["created"], result["skipped"], result["errors"]) == ("succeeded", 3, 1, [])
    rows = {
        m.user.email: (m.role, m.is_resident, m.user.name)
        for m in Membership.objects.filter(cluster=estate.cluster).select_related("user")
    }
    assert rows["ada@example.test"] == ("resident", True, "Ada Obi")
    assert rows["bola@example.test"] == ("treasurer", True, "Bola Ade")
    assert rows["chi@example.test"] == ("auditor", False, "Chi Eze")
    assert len(rows) == 9
    assert Wallet.objects.filter(cluster=estate.cluster, user__email="ada@example.test").exists()


def test_csv_import_with_one_bad_line_imports_nothing(estate: Estate) -> None:
    users, members = User.objects.count(), Membership.objects.count()
    text = (
        "email,name,role,is_resident\n"
        "ada@example.test,Ada Obi,resident,true\n"
        "not-an-email,Bad Line,resident,true\n"
        "bola@example.test,Bola Ade,resident,true\n"
    )
    result = imported(api_as(estate.admin), estate, text)
    assert result["status"] == "failed"
    assert result["errors"] == [{"line": 3, "message": "email: Enter a valid email address."}]
    assert (User.objects.count(), Membership.objects.count()) == (users, members)
    assert not User.objects.filter(email="ada@example.test").exists()


def test_csv_import_reports_every_bad_line(estate: Estate) -> None:
    text = (
        "email,name,role,is_resident\n"
        "ada@example.test,Ada,landlord,true\n"
        "bola@example.test,Bola,resident,sometimes\n"
        "ada@example.test,Ada again,resident,true\n"
    )
    result = imported(api_as(estate.admin), estate, text)
    errors = result["errors"]
    assert [e["line"] for e in errors] == [2, 3, 4]
    assert "role" in errors[0]["message"]
    assert "is_resident" in errors[1]["message"]
    assert "twice" in errors[2]["message"]
    assert result["error_count"] == 3
    assert not User.objects.filter(email__in=["ada@example.test", "bola@example.test"]).exists()


def test_csv_import_reports_the_physical_line_after_a_blank_line(estate: Estate) -> None:
    text = "email,name,role,is_resident\nada@example.test,Ada,resident,true\n\nnot-an-email,Bad,resident,true\n"
    result = imported(api_as(estate.admin), estate, text)
    assert [e["line"] for e in result["errors"]] == [4]


@pytest.mark.parametrize(
    ("content", "line"),
    [("name,role\nAda,resident\n", 1), ("email,name,role,is_resident\n", 1)],
)
def test_csv_import_fails_a_file_without_members(estate: Estate, content: str, line: int) -> None:
    members = Membership.objects.count()
    result = imported(api_as(estate.admin), estate, content)
    assert result["status"] == "failed"
    assert [e["line"] for e in result["errors"]] == [line]
    assert Membership.objects.count() == members


def test_csv_import_refuses_a_file_that_is_not_text(estate: Estate) -> None:
    response = import_csv(api_as(estate.admin), estate, b"\xff\xfe\x00bad")
    assert_error(response, 400, "validation_error", ("file",))


def test_csv_import_without_a_file(estate: Estate) -> None:
    response = api_as(estate.admin).post(f"{mgmt(estate)}/members/import/", {"csv": "email\nx@example.test"})
    assert_error(response, 400, "validation_error", ("file",))


def test_csv_import_needs_manage_members(estate: Estate) -> None:
    response = import_csv(api_as(estate.treasurer), estate, "email\nx@example.test\n")
    assert_error(response, 403, "permission_denied")
    assert not User.objects.filter(email="x@example.test").exists()


# --- members: list -----------------------------------------------------------------------------


@pytest.fixture
def billed_estate(estate: Estate) -> dict[str, Any]:
    """Three residents with different bill situations (see each assertion)."""
    r0, r1, r2 = estate.residents
    wide = estate.wide_bill(amount=Decimal("15000.00"), title="Service charge")
    own = estate.user_bill(r0, amount=Decimal("5000.00"), title="Water meter", category="water")
    late = make_past_due(estate.wide_bill(amount=Decimal("2000.00"), title="Waste", allow_payment_after_due=True))
    gone = estate.wide_bill(amount=Decimal("999.00"), title="Cancelled one")
    bill_cancel(access=access(estate.admin), bill=gone, reason="issued by mistake")
    estate.fund(r0, "20000.00")
    bill_acknowledge(access=access(r0), bill=wide)
    pay(r0, wide)
    bill_dispute(access=access(r1), bill=wide, reason="I moved out in March")
    estate.fund(r2, "2000.00")
    bill_acknowledge(access=access(r2), bill=late)
    pay(r2, late)
    return {"wide": wide, "own": own, "late": late, "gone": gone}


def test_member_list_carries_each_members_bill_summary(estate: Estate, billed_estate: dict[str, Any]) -> None:
    response = api_as(estate.auditor).get(f"{mgmt(estate)}/members/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    rows = {row["id"]: row for row in body["results"]}
    assert len(rows) == 6
    for row in rows.values():
        assert MEMBER_FIELDS | {"bill_summary"} <= set(row)
        assert set(row["bill_summary"]) == SUMMARY_FIELDS
    r0, r1, r2 = estate.residents
    assert rows[str(r0.user_id)]["bill_summary"] == {
        # paid the service charge; owes the water bill (not acknowledged) and the late waste bill
        "outstanding_count": 2,
        "outstanding_amount": "7000.00",
        "overdue_count": 1,
        "unacknowledged_count": 2,
        "disputed_count": 0,
        "paid_count": 1,
    }
    assert rows[str(r1.user_id)]["bill_summary"] == {
        # disputes the service charge (still owed), has not touched the waste bill
        "outstanding_count": 2,
        "outstanding_amount": "17000.00",
        "overdue_count": 1,
        "unacknowledged_count": 2,
        "disputed_count": 1,
        "paid_count": 0,
    }
    assert rows[str(r2.user_id)]["bill_summary"] == {
        "outstanding_count": 1,
        "outstanding_amount": "15000.00",
        "overdue_count": 0,
        "unacknowledged_count": 1,
        "disputed_count": 0,
        "paid_count": 1,
    }
    zero = {
        "outstanding_count": 0,
        "outstanding_amount": "0.00",
        "overdue_count": 0,
        "unacknowledged_count": 0,
        "disputed_count": 0,
        "paid_count": 0,
    }
    for staff in (estate.admin, estate.treasurer, estate.auditor):
        row = rows[str(staff.user_id)]
        assert row["bill_summary"] == zero
        assert (row["role"], row["is_resident"]) == (staff.role, False)
    assert rows[str(r0.user_id)]["email"] == r0.user.email
    assert rows[str(r0.user_id)]["name"] == r0.user.name


def test_member_list_filters(estate: Estate, billed_estate: dict[str, Any]) -> None:
    api = api_as(estate.admin)
    path = f"{mgmt(estate)}/members/"
    r0, r1, r2 = estate.residents

    def listed(**params: Any) -> set[str]:
        response = api.get(path, **params)
        assert response.status_code == 200, response.json()
        return set(ids(response.json()["results"]))

    assert listed(role="resident") == {str(m.user_id) for m in estate.residents}
    assert listed(role="treasurer") == {str(estate.treasurer.user_id)}
    assert listed(has_overdue="true") == {str(r0.user_id), str(r1.user_id)}
    assert listed(has_overdue="false") == {str(m.user_id) for m in (r2, estate.admin, estate.treasurer, estate.auditor)}
    assert listed(search=r1.user.email.upper()) == {str(r1.user_id)}
    assert listed(search=r2.user.name.split()[-1]) == {str(r2.user_id)}
    assert listed(search="nobody-matches-this") == set()
    assert len(listed(search="")) == 6  # an empty search box filters nothing
    assert listed(role="resident", has_overdue="true") == {str(r0.user_id), str(r1.user_id)}
    for params, field in (({"role": "landlord"}, "role"), ({"has_overdue": "maybe"}, "has_overdue")):
        assert_error(api.get(path, **params), 400, "validation_error", (field,))


def test_member_list_needs_a_financial_permission(estate: Estate) -> None:
    assert_error(api_as(estate.residents[0]).get(f"{mgmt(estate)}/members/"), 403, "permission_denied")
    assert api_as(estate.treasurer).get(f"{mgmt(estate)}/members/").status_code == 200


# --- members: PATCH ----------------------------------------------------------------------------


def test_patch_member_role(estate: Estate) -> None:
    member = estate.residents[0]
    response = api_as(estate.admin).patch(f"{mgmt(estate)}/members/{member.user_id}/", {"role": "treasurer"})
    assert response.status_code == 200, response.json()
    assert set(response.json()) >= MEMBER_FIELDS
    assert (response.json()["id"], response.json()["role"]) == (str(member.user_id), "treasurer")
    member.refresh_from_db()
    assert member.role == Role.TREASURER
    assert member.is_resident  # residency is separate from the role
    event = AuditEvent.objects.get(action="member.update", target_id=str(member.pk))
    assert event.data == {"role": "treasurer"}
    # The new role works at once.
    assert api_as(member).get(f"{mgmt(estate)}/dashboard/").status_code == 200


def test_patch_member_residency_changes_who_is_billed(estate: Estate) -> None:
    member = estate.residents[0]
    response = api_as(estate.admin).patch(f"{mgmt(estate)}/members/{member.user_id}/", {"is_resident": False})
    assert response.status_code == 200, response.json()
    assert response.json()["is_resident"] is False
    member.refresh_from_db()
    assert member.is_resident is False
    created = api_as(estate.admin).post(
        f"{mgmt(estate)}/bills/", {"title": "Levy", "category": "other", "amount": "100.00", "due_date": due()}
    )
    assert created.json()["stats"]["eligible"] == 2


def test_patch_member_deactivates(estate: Estate) -> None:
    member = estate.residents[0]
    response = api_as(estate.admin).patch(f"{mgmt(estate)}/members/{member.user_id}/", {"active": False})
    assert response.status_code == 200, response.json()
    assert response.json()["active"] is False
    member.refresh_from_db()
    assert (member.active, member.deactivated_at is not None) == (False, True)
    # A former member is outside the estate: 404, like a stranger.
    assert_error(api_as(member).get(f"/api/v1/clusters/{estate.cluster.pk}/bills/"), 404, "not_found")


def test_a_deactivated_member_is_added_again_from_now(estate: Estate) -> None:
    member = estate.residents[0]
    earlier = estate.wide_bill(title="Issued while they were a member")
    admin = api_as(estate.admin)
    assert admin.patch(f"{mgmt(estate)}/members/{member.user_id}/", {"active": False}).status_code == 200
    reactivate = admin.patch(f"{mgmt(estate)}/members/{member.user_id}/", {"active": True})
    assert_error(reactivate, 400, "validation_error", ("active",))
    member.refresh_from_db()
    assert member.active is False
    response = admin.post(
        f"{mgmt(estate)}/members/", {"email": member.user.email, "name": "Back Again", "role": "resident"}
    )
    assert response.status_code == 201, response.json()
    member.refresh_from_db()
    assert (member.active, member.deactivated_at) == (True, None)
    assert datetime.datetime.fromisoformat(response.json()["joined_at"]) == member.joined_at
    assert member.joined_at > earlier.created_at
    assert Membership.objects.filter(cluster=estate.cluster, user=member.user).count() == 1
    # They owe what is issued from now on, not what was issued before they came back.
    rows = api_as(member).get(f"/api/v1/clusters/{estate.cluster.pk}/bills/").json()["results"]
    assert rows == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "non_field_errors"),
        ({"role": "landlord"}, "role"),
        ({"is_resident": "sometimes"}, "is_resident"),
        ({"active": "nope"}, "active"),
    ],
)
def test_patch_member_validation(estate: Estate, payload: dict[str, Any], field: str) -> None:
    member = estate.residents[0]
    response = api_as(estate.admin).patch(f"{mgmt(estate)}/members/{member.user_id}/", payload)
    assert_error(response, 400, "validation_error", (field,))
    member.refresh_from_db()
    assert (member.role, member.is_resident, member.active) == (Role.RESIDENT, True, True)


def test_patch_member_refusals(estate: Estate, other_estate: Estate) -> None:
    admin = api_as(estate.admin)
    estate.add(role=Role.ADMIN)  # not the last admin: the rule tested here is "not oneself"
    own = admin.patch(f"{mgmt(estate)}/members/{estate.admin.user_id}/", {"active": False})
    assert_error(own, 400, "validation_error", ("active",))
    estate.admin.refresh_from_db()
    assert estate.admin.active
    assert_error(admin.patch(f"{mgmt(estate)}/members/not-a-uuid/", {"role": "admin"}), 404, "not_found")
    stranger = other_estate.residents[0]
    assert_error(admin.patch(f"{mgmt(estate)}/members/{stranger.user_id}/", {"role": "admin"}), 404, "not_found")
    assert_error(admin.patch(f"{mgmt(estate)}/members/{uuid.uuid4()}/", {"role": "admin"}), 404, "not_found")
    target = estate.residents[1]
    denied = api_as(estate.treasurer).patch(f"{mgmt(estate)}/members/{target.user_id}/", {"role": "admin"})
    assert_error(denied, 403, "permission_denied")
    target.refresh_from_db()
    stranger.refresh_from_db()
    assert target.role == stranger.role == Role.RESIDENT


# --- bills: create -----------------------------------------------------------------------------


def test_create_estate_wide_bill(db: None) -> None:
    estate = make_estate(currency="KES")
    response = api_as(estate.admin).post(
        f"{mgmt(estate)}/bills/",
        {
            "title": "Service charge April",
            "description": "Quarterly",
            "category": "service_charge",
            "amount": "15000.00",
            "due_date": due(10),
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= BILL_FIELDS
    bill = Bill.objects.get(pk=body["id"])
    year = datetime.datetime.fromisoformat(body["created_at"]).year
    assert {k: body[k] for k in BILL_FIELDS - {"id", "created_at", "stats"}} == {
        "reference": f"BILL-{year}-000001",
        "title": "Service charge April",
        "category": "service_charge",
        "amount": "15000.00",
        "currency": "KES",
        "due_date": due(10),
        "allow_payment_after_due": False,
        "is_cluster_wide": True,
        "user_id": None,
        "cancelled_at": None,
    }
    assert body["stats"] == {
        "eligible": 3,
        "acknowledged": 0,
        "paid": 0,
        "disputed": 0,
        "waived": 0,
        "overdue": 0,
        "outstanding": 3,
        "collected_amount": "0.00",
    }
    # The response is built from the bill as issued, not read back: it must be what a read shows.
    assert api_as(estate.admin).get(f"{mgmt(estate)}/bills/{bill.pk}/").json() == body
    assert (bill.user_id, bill.amount, bill.created_by_id) == (None, Decimal("15000.00"), estate.admin.user_id)
    assert bill.description == "Quarterly"
    notified = set(Notification.objects.filter(event="PAYMENT_DUE").values_list("recipient_id", flat=True))
    assert notified == {m.user_id for m in estate.residents}
    assert AuditEvent.objects.filter(action="bill.create", target_id=str(bill.pk)).count() == 1


def test_create_user_specific_bill(estate: Estate) -> None:
    member = estate.residents[1]
    response = api_as(estate.treasurer).post(
        f"{mgmt(estate)}/bills/",
        {
            "title": "Broken gate",
            "category": "maintenance",
            "amount": "2500.5",
            "due_date": due(3),
            "allow_payment_after_due": True,
            "user_id": str(member.user_id),
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["is_cluster_wide"], body["user_id"], body["amount"], body["allow_payment_after_due"]) == (
        False,
        str(member.user_id),
        "2500.50",
        True,
    )
    assert body["stats"]["eligible"] == 1
    assert body["stats"]["outstanding"] == 1
    assert api_as(estate.treasurer).get(f"{mgmt(estate)}/bills/{body['id']}/").json() == body
    assert Bill.objects.get(pk=body["id"]).user_id == member.user_id
    notified = list(Notification.objects.filter(event="PAYMENT_DUE").values_list("recipient_id", flat=True))
    assert notified == [member.user_id]


def test_create_bill_with_null_user_id_is_estate_wide(estate: Estate) -> None:
    response = api_as(estate.admin).post(
        f"{mgmt(estate)}/bills/",
        {"title": "Levy", "category": "other", "amount": "1.00", "due_date": due(), "user_id": None},
    )
    assert response.status_code == 201, response.json()
    assert response.json()["is_cluster_wide"] is True


_MISSING = object()


def _bill_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"title": "Levy", "category": "security", "amount": "100.00", "due_date": due()}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not _MISSING}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": _MISSING}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": {"nested": 1}}, "title"),
        ({"category": "parking"}, "category"),
        ({"category": _MISSING}, "category"),
        ({"amount": _MISSING}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"amount": "1e20"}, "amount"),
        ({"amount": "9" * 2000}, "amount"),
        ({"amount": "1000000000000.00"}, "amount"),
        ({"amount": ["100.00"]}, "amount"),
        ({"amount": True}, "amount"),
        ({"due_date": _MISSING}, "due_date"),
        ({"due_date": "yesterday"}, "due_date"),
        ({"due_date": "2026-02-30"}, "due_date"),
        ({"due_date": 20300101}, "due_date"),
        ({"due_date": "2001-01-01"}, "due_date"),
        ({"allow_payment_after_due": "perhaps"}, "allow_payment_after_due"),
        ({"user_id": "not-a-uuid"}, "user_id"),
        ({"user_id": 5}, "user_id"),
        ({"user_id": "00000000-0000-0000-0000-000000000000"}, "user_id"),
    ],
)
def test_create_bill_validation(estate: Estate, overrides: dict[str, Any], field: str) -> None:
    response = api_as(estate.admin).post(f"{mgmt(estate)}/bills/", _bill_payload(**overrides))
    assert_error(response, 400, "validation_error", (field,))
    assert not Bill.objects.exists()


def test_create_bill_for_someone_who_cannot_be_billed(estate: Estate, other_estate: Estate) -> None:
    admin = api_as(estate.admin)
    inactive = estate.add()
    inactive.active = False
    inactive.deactivated_at = inactive.joined_at
    inactive.save()
    for user_id in (estate.treasurer.user_id, other_estate.residents[0].user_id, inactive.user_id):
        response = admin.post(f"{mgmt(estate)}/bills/", _bill_payload(user_id=str(user_id)))
        assert_error(response, 400, "validation_error", ("user_id",))
    assert not Bill.objects.exists()
    assert not Notification.objects.exists()


def test_create_bill_refuses_a_float_amount(estate: Estate) -> None:
    response = api_as(estate.admin).post(f"{mgmt(estate)}/bills/", _bill_payload(amount=100.5))
    assert_error(response, 400, "validation_error", ("amount",))
    assert not Bill.objects.exists()


@pytest.mark.parametrize("role", ["auditor", "resident"])
def test_create_bill_needs_manage_bill(estate: Estate, role: str) -> None:
    caller = estate.auditor if role == "auditor" else estate.residents[0]
    assert_error(api_as(caller).post(f"{mgmt(estate)}/bills/", _bill_payload()), 403, "permission_denied")
    assert not Bill.objects.exists()


# --- bills: list, detail -----------------------------------------------------------------------


@pytest.fixture
def bill_set(estate: Estate) -> dict[str, Bill]:
    march = estate.wide_bill(
        title="Service charge March", category="service_charge", due_date=estate_today() + datetime.timedelta(days=10)
    )
    guards = estate.wide_bill(
        title="Security guards", category="security", due_date=estate_today() + datetime.timedelta(days=20)
    )
    water = estate.user_bill(
        estate.residents[0], title="Water meter", category="water", due_date=estate_today() + datetime.timedelta(days=5)
    )
    waste = estate.wide_bill(
        title="Waste pickup", category="waste", due_date=estate_today() + datetime.timedelta(days=30)
    )
    bill_cancel(access=access(estate.admin), bill=waste, reason="duplicate")
    return {"march": march, "guards": guards, "water": water, "waste": waste}


def test_bill_list_is_newest_first_with_stats(estate: Estate, bill_set: dict[str, Bill]) -> None:
    response = api_as(estate.auditor).get(f"{mgmt(estate)}/bills/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    expected = [bill_set[name] for name in ("waste", "water", "guards", "march")]
    assert ids(body["results"]) == [str(b.pk) for b in expected]
    for row in body["results"]:
        assert set(row) >= BILL_FIELDS
        assert set(row["stats"]) == STATS_FIELDS
    rows = {row["id"]: row for row in body["results"]}
    waste = rows[str(bill_set["waste"].pk)]
    assert waste["cancelled_at"] is not None
    assert waste["stats"]["outstanding"] == 0
    water = rows[str(bill_set["water"].pk)]
    assert (water["user_id"], water["is_cluster_wide"], water["stats"]["eligible"]) == (
        str(estate.residents[0].user_id),
        False,
        1,
    )
    assert rows[str(bill_set["guards"].pk)]["currency"] == "NGN"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"scope": "cluster"}, {"march", "guards", "waste"}),
        ({"scope": "user"}, {"water"}),
        ({"user_id": "RESIDENT0"}, {"water"}),
        ({"category": "security"}, {"guards"}),
        ({"due_before": 10}, {"water", "march"}),
        ({"due_after": 20}, {"guards", "waste"}),
        ({"due_after": 6, "due_before": 20}, {"march", "guards"}),
        ({"cancelled": "true"}, {"waste"}),
        ({"cancelled": "false"}, {"march", "guards", "water"}),
        ({"search": "MARCH"}, {"march"}),
        ({"search": "REFERENCE:guards"}, {"guards"}),
        ({"scope": "cluster", "cancelled": "false", "category": "service_charge"}, {"march"}),
        ({"search": "no such bill"}, set()),
    ],
)
def test_bill_list_filters(
    estate: Estate, bill_set: dict[str, Bill], params: dict[str, Any], expected: set[str]
) -> None:
    query: dict[str, Any] = {}
    for key, value in params.items():
        if value == "RESIDENT0":
            value = str(estate.residents[0].user_id)
        elif isinstance(value, int):
            value = due(value)
        elif isinstance(value, str) and value.startswith("REFERENCE:"):
            value = bill_set[value.split(":", 1)[1]].reference
        query[key] = value
    response = api_as(estate.admin).get(f"{mgmt(estate)}/bills/", **query)
    assert response.status_code == 200, response.json()
    names = {name for name, bill in bill_set.items() if str(bill.pk) in ids(response.json()["results"])}
    assert names == expected
    assert len(response.json()["results"]) == len(expected)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"scope": "everyone"}, "scope"),
        ({"user_id": "abc"}, "user_id"),
        ({"category": "parking"}, "category"),
        ({"due_before": "soon"}, "due_before"),
        ({"due_after": "2026-13-01"}, "due_after"),
        ({"cancelled": "maybe"}, "cancelled"),
        ({"search": "s" * 201}, "search"),
    ],
)
def test_bill_list_refuses_bad_filters(estate: Estate, params: dict[str, Any], field: str) -> None:
    assert_error(api_as(estate.admin).get(f"{mgmt(estate)}/bills/", **params), 400, "validation_error", (field,))


def test_bill_list_shows_only_this_estates_bills(estate: Estate, other_estate: Estate) -> None:
    mine = estate.wide_bill()
    other_estate.wide_bill()
    response = api_as(estate.admin).get(f"{mgmt(estate)}/bills/")
    assert ids(response.json()["results"]) == [str(mine.pk)]


def test_bill_detail_counts_each_members_situation(estate: Estate, other_estate: Estate) -> None:
    r0, r1, _ = estate.residents
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    estate.fund(r0, "15000.00")
    bill_acknowledge(access=access(r0), bill=bill)
    pay(r0, bill)
    bill_dispute(access=access(r1), bill=bill, reason="wrong amount")
    response = api_as(estate.auditor).get(f"{mgmt(estate)}/bills/{bill.pk}/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["id"] == str(bill.pk)
    assert (body["amount"], body["currency"]) == ("15000.00", "NGN")
    assert body["stats"] == {
        "eligible": 3,
        "acknowledged": 1,
        "paid": 1,
        "disputed": 1,
        "waived": 0,
        "overdue": 0,
        "outstanding": 2,
        "collected_amount": "15000.00",
    }
    make_past_due(bill)
    late = api_as(estate.auditor).get(f"{mgmt(estate)}/bills/{bill.pk}/").json()["stats"]
    assert (late["overdue"], late["outstanding"]) == (1, 2)
    foreign = other_estate.wide_bill()
    for path in (f"bills/{foreign.pk}/", "bills/not-a-uuid/", f"bills/{uuid.uuid4()}/"):
        assert_error(api_as(estate.admin).get(f"{mgmt(estate)}/{path}"), 404, "not_found")
    assert_error(api_as(r0).get(f"{mgmt(estate)}/bills/{bill.pk}/"), 403, "permission_denied")


# --- bills: PATCH ------------------------------------------------------------------------------


def test_patch_bill_terms_before_any_acknowledgement(estate: Estate) -> None:
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    response = api_as(estate.admin).patch(
        f"{mgmt(estate)}/bills/{bill.pk}/",
        {
            "title": "Service charge (corrected)",
            "amount": "12500.00",
            "due_date": due(20),
            "allow_payment_after_due": True,
            "user_id": str(estate.residents[2].user_id),
        },
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["title"], body["amount"], body["due_date"], body["allow_payment_after_due"]) == (
        "Service charge (corrected)",
        "12500.00",
        due(20),
        True,
    )
    assert (body["is_cluster_wide"], body["user_id"], body["stats"]["eligible"]) == (
        False,
        str(estate.residents[2].user_id),
        1,
    )
    bill.refresh_from_db()
    assert (bill.amount, bill.due_date, bill.user_id) == (
        Decimal("12500.00"),
        estate_today() + datetime.timedelta(days=20),
        estate.residents[2].user_id,
    )
    event = AuditEvent.objects.get(action="bill.update", target_id=str(bill.pk))
    assert event.data["after"]["amount"] == "12500.00"


@pytest.mark.parametrize(
    "terms",
    [
        {"amount": "20000.00"},
        {"due_date": "DUE30"},
        {"allow_payment_after_due": True},
        {"user_id": "RESIDENT1"},
    ],
)
def test_patch_bill_terms_after_an_acknowledgement_is_refused(estate: Estate, terms: dict[str, Any]) -> None:
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(estate.residents[0]), bill=bill)
    payload = {
        k: (due(30) if v == "DUE30" else str(estate.residents[1].user_id) if v == "RESIDENT1" else v)
        for k, v in terms.items()
    }
    before = Bill.objects.values().get(pk=bill.pk)
    response = api_as(estate.admin).patch(f"{mgmt(estate)}/bills/{bill.pk}/", payload)
    assert_error(response, 409, "bill_terms_locked")
    assert Bill.objects.values().get(pk=bill.pk) == before


def test_patch_bill_title_and_description_after_an_acknowledgement(estate: Estate) -> None:
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(estate.residents[0]), bill=bill)
    response = api_as(estate.admin).patch(
        f"{mgmt(estate)}/bills/{bill.pk}/", {"title": "Renamed", "description": "Clearer", "amount": "15000.00"}
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["title"], response.json()["amount"]) == ("Renamed", "15000.00")
    bill.refresh_from_db()
    assert (bill.title, bill.description, bill.amount) == ("Renamed", "Clearer", Decimal("15000.00"))


def test_patch_bill_terms_after_a_payment_is_refused(estate: Estate) -> None:
    member = estate.residents[0]
    bill = estate.user_bill(member, amount=Decimal("500.00"))
    estate.fund(member, "500.00")
    bill_acknowledge(access=access(member), bill=bill)
    pay(member, bill)
    response = api_as(estate.admin).patch(f"{mgmt(estate)}/bills/{bill.pk}/", {"amount": "400.00"})
    assert_error(response, 409, "bill_terms_locked")
    assert Bill.objects.get(pk=bill.pk).amount == Decimal("500.00")


def test_patch_bill_refusals(estate: Estate, other_estate: Estate) -> None:
    admin = api_as(estate.admin)
    bill = estate.wide_bill()
    for payload, field in (
        ({"amount": "0"}, "amount"),
        ({"due_date": "2001-01-01"}, "due_date"),
        ({"title": ""}, "title"),
        ({"user_id": str(estate.treasurer.user_id)}, "user_id"),
        ({"category": "parking"}, "category"),
    ):
        assert_error(admin.patch(f"{mgmt(estate)}/bills/{bill.pk}/", payload), 400, "validation_error", (field,))
    assert_error(
        api_as(estate.auditor).patch(f"{mgmt(estate)}/bills/{bill.pk}/", {"title": "x"}), 403, "permission_denied"
    )
    foreign = other_estate.wide_bill()
    assert_error(admin.patch(f"{mgmt(estate)}/bills/{foreign.pk}/", {"title": "x"}), 404, "not_found")
    assert_error(admin.patch(f"{mgmt(estate)}/bills/nope/", {"title": "x"}), 404, "not_found")
    bill_cancel(access=access(estate.admin), bill=bill, reason="gone")
    assert_error(admin.patch(f"{mgmt(estate)}/bills/{bill.pk}/", {"title": "x"}), 409, "bill_cancelled")
    assert Bill.objects.get(pk=bill.pk).title == "Service charge November"
    assert Bill.objects.get(pk=foreign.pk).title == "Service charge November"


# --- bills: cancel -----------------------------------------------------------------------------


def test_cancel_bill(estate: Estate) -> None:
    payer = estate.residents[0]
    bill = estate.wide_bill(amount=Decimal("100.00"))
    estate.fund(payer, "100.00")
    bill_acknowledge(access=access(payer), bill=bill)
    pay(payer, bill)
    response = api_as(estate.treasurer).post(f"{mgmt(estate)}/bills/{bill.pk}/cancel/", {"reason": "Wrong month"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["id"] == str(bill.pk)
    assert body["cancelled_at"] is not None
    assert body["stats"]["outstanding"] == 0
    bill.refresh_from_db()
    assert datetime.datetime.fromisoformat(body["cancelled_at"]) == bill.cancelled_at
    assert (bill.cancelled_by_id, bill.cancellation_reason) == (estate.treasurer.user_id, "Wrong month")
    # The payment stays on the ledger; those who had not paid are told.
    assert Transaction.objects.filter(bill=bill, status="completed").count() == 1
    told = set(Notification.objects.filter(event="BILL_CANCELLED").values_list("recipient_id", flat=True))
    assert told == {m.user_id for m in estate.residents[1:]}
    again = api_as(estate.admin).post(f"{mgmt(estate)}/bills/{bill.pk}/cancel/", {"reason": "again"})
    assert_error(again, 409, "bill_cancelled")
    bill.refresh_from_db()
    assert bill.cancellation_reason == "Wrong month"


def test_cancel_bill_refusals(estate: Estate, other_estate: Estate) -> None:
    bill = estate.wide_bill()
    admin = api_as(estate.admin)
    assert_error(admin.post(f"{mgmt(estate)}/bills/{bill.pk}/cancel/", {}), 400, "validation_error", ("reason",))
    assert_error(
        admin.post(f"{mgmt(estate)}/bills/{bill.pk}/cancel/", {"reason": "   "}), 400, "validation_error", ("reason",)
    )
    assert_error(
        api_as(estate.auditor).post(f"{mgmt(estate)}/bills/{bill.pk}/cancel/", {"reason": "x"}),
        403,
        "permission_denied",
    )
    foreign = other_estate.wide_bill()
    assert_error(admin.post(f"{mgmt(estate)}/bills/{foreign.pk}/cancel/", {"reason": "x"}), 404, "not_found")
    assert_error(admin.post(f"{mgmt(estate)}/bills/123/cancel/", {"reason": "x"}), 404, "not_found")
    assert not Bill.objects.filter(cancelled_at__isnull=False).exists()


# --- bills: per-member rows --------------------------------------------------------------------


def test_bill_members_rows_and_status_filter(estate: Estate) -> None:
    r0, r1, r2 = estate.residents
    bill = estate.wide_bill(amount=Decimal("100.00"))
    estate.fund(r0, "100.00")
    bill_acknowledge(access=access(r0), bill=bill)
    payment = pay(r0, bill)
    dispute = bill_dispute(access=access(r1), bill=bill, reason="not mine")
    api = api_as(estate.auditor)
    response = api.get(f"{mgmt(estate)}/bills/{bill.pk}/members/")
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert [row["user_id"] for row in rows] == [str(r0.user_id), str(r1.user_id), str(r2.user_id)]
    for row in rows:
        assert {"user_id", "name", "status", "acknowledged_at", "paid_at", "dispute_id"} <= set(row)
    first, second, third = rows
    assert (first["name"], first["status"], first["dispute_id"]) == (r0.user.name, "paid", None)
    assert datetime.datetime.fromisoformat(first["paid_at"]) == payment.created_at
    assert first["acknowledged_at"] is not None
    assert (second["status"], second["dispute_id"], second["acknowledged_at"], second["paid_at"]) == (
        "disputed",
        str(dispute.pk),
        None,
        None,
    )
    assert (third["status"], third["acknowledged_at"], third["paid_at"], third["dispute_id"]) == (
        "pending",
        None,
        None,
        None,
    )
    only_paid = api.get(f"{mgmt(estate)}/bills/{bill.pk}/members/", status="paid").json()["results"]
    assert [row["user_id"] for row in only_paid] == [str(r0.user_id)]
    assert api.get(f"{mgmt(estate)}/bills/{bill.pk}/members/", status="waived").json()["results"] == []
    assert_error(
        api.get(f"{mgmt(estate)}/bills/{bill.pk}/members/", status="late"), 400, "validation_error", ("status",)
    )
    assert_error(api.get(f"{mgmt(estate)}/bills/xyz/members/"), 404, "not_found")
    assert_error(api_as(r2).get(f"{mgmt(estate)}/bills/{bill.pk}/members/"), 403, "permission_denied")


# --- dashboard ---------------------------------------------------------------------------------


def test_dashboard_numbers(estate: Estate) -> None:
    r0, r1, _ = estate.residents
    wide = estate.wide_bill(amount=Decimal("15000.00"), title="Service charge")
    own = estate.user_bill(
        r1, amount=Decimal("5000.00"), title="Water", due_date=estate_today() + datetime.timedelta(days=5)
    )
    late = make_past_due(estate.wide_bill(amount=Decimal("2000.00"), title="Waste", allow_payment_after_due=True))
    cancelled = estate.wide_bill(amount=Decimal("7777.00"), title="Mistake")
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="mistake")
    estate.fund(r0, "15000.00")
    bill_acknowledge(access=access(r0), bill=wide)
    payment = pay(r0, wide)
    bill_dispute(access=access(r1), bill=wide, reason="too high")
    response = api_as(estate.auditor).get(f"{mgmt(estate)}/dashboard/")
    assert response.status_code == 200, response.json()
    body = response.json()
    # billed: 15000 x 3 + 5000 x 1 + 2000 x 3; the cancelled bill does not count
    assert {k: body[k] for k in body if k not in ("recent_payments", "due_soon")} == {
        "currency": "NGN",
        "billed_amount": "56000.00",
        "collected_amount": "15000.00",
        "outstanding_amount": "41000.00",
        "overdue_amount": "6000.00",
        "collection_rate": "0.2679",
        "open_disputes": 1,
        "bills_count": 3,
        "members_count": 6,
    }
    [recent] = body["recent_payments"]
    assert recent["transaction_id"] == str(payment.pk)
    assert recent["bill_id"] == str(wide.pk)
    assert recent["user_id"] == str(r0.user_id)
    assert recent["amount"] == "15000.00"
    assert recent["refunded_at"] is None
    assert [row["id"] for row in body["due_soon"]] == [str(own.pk), str(wide.pk)]
    assert [row["outstanding"] for row in body["due_soon"]] == [1, 2]
    assert body["due_soon"][0]["amount"] == "5000.00"
    assert str(late.pk) not in [row["id"] for row in body["due_soon"]]
    assert_error(api_as(r0).get(f"{mgmt(estate)}/dashboard/"), 403, "permission_denied")


def test_a_refunded_payment_on_the_dashboard_has_its_refund_time_and_is_not_collected(estate: Estate) -> None:
    resident = estate.residents[0]
    wide = estate.wide_bill(amount=Decimal("15000.00"))
    estate.fund(resident, "15000.00")
    bill_acknowledge(access=access(resident), bill=wide)
    payment = pay(resident, wide)
    refund = bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key=new_key("refund"))
    body = api_as(estate.admin).get(f"{mgmt(estate)}/dashboard/").json()
    [recent] = body["recent_payments"]
    assert recent["transaction_id"] == str(payment.pk)
    assert datetime.datetime.fromisoformat(recent["refunded_at"]) == refund.created_at
    assert (body["collected_amount"], body["collection_rate"]) == ("0.00", "0.0000")


def test_dashboard_of_an_empty_estate(estate: Estate) -> None:
    body = api_as(estate.admin).get(f"{mgmt(estate)}/dashboard/").json()
    assert (body["billed_amount"], body["collected_amount"], body["collection_rate"]) == ("0.00", "0.00", "0.0000")
    assert (body["recent_payments"], body["due_soon"], body["bills_count"]) == ([], [], 0)


def test_dashboard_totals_beyond_a_single_amounts_precision(estate: Estate) -> None:
    estate.wide_bill(amount=Decimal("999999999999.99"))
    response = api_as(estate.admin).get(f"{mgmt(estate)}/dashboard/")
    assert response.status_code == 200
    assert response.json()["billed_amount"] == "2999999999999.97"


def test_member_summary_totals_beyond_a_single_amounts_precision(estate: Estate) -> None:
    estate.wide_bill(amount=Decimal("999999999999.99"))
    estate.wide_bill(amount=Decimal("999999999999.99"))
    response = api_as(estate.admin).get(f"{mgmt(estate)}/members/", role="resident")
    assert response.status_code == 200
    assert {r["bill_summary"]["outstanding_amount"] for r in response.json()["results"]} == {"1999999999999.98"}


# --- disputes ----------------------------------------------------------------------------------


def test_dispute_list_and_status_filter(estate: Estate, other_estate: Estate) -> None:
    r0, r1, r2 = estate.residents
    bill = estate.wide_bill()
    first = bill_dispute(access=access(r0), bill=bill, reason="first")
    second = bill_dispute(access=access(r1), bill=bill, reason="second")
    third = bill_dispute(access=access(r2), bill=bill, reason="third")
    dispute_resolve(access=access(estate.admin), dispute=first, resolution="upheld", note="fair")
    dispute_resolve(access=access(estate.admin), dispute=second, resolution="rejected", note="no")
    bill_dispute(access=access(other_estate.residents[0]), bill=other_estate.wide_bill(), reason="elsewhere")
    api = api_as(estate.auditor)
    response = api.get(f"{mgmt(estate)}/disputes/")
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert ids(rows) == [str(third.pk), str(second.pk), str(first.pk)]
    assert {"id", "status", "reason", "created_at", "bill_id", "user_id"} <= set(rows[0])
    assert (rows[0]["bill_id"], rows[0]["user_id"], rows[0]["reason"]) == (str(bill.pk), str(r2.user_id), "third")
    for status, expected in (("open", third), ("upheld", first), ("rejected", second)):
        assert ids(api.get(f"{mgmt(estate)}/disputes/", status=status).json()["results"]) == [str(expected.pk)]
    assert_error(api.get(f"{mgmt(estate)}/disputes/", status="closed"), 400, "validation_error", ("status",))
    assert_error(api_as(r0).get(f"{mgmt(estate)}/disputes/"), 403, "permission_denied")


def test_resolve_dispute_upheld_waives_the_bill_for_that_member(estate: Estate) -> None:
    member = estate.residents[0]
    bill = estate.wide_bill()
    dispute = bill_dispute(access=access(member), bill=bill, reason="I was away")
    response = api_as(estate.treasurer).post(
        f"{mgmt(estate)}/disputes/{dispute.pk}/resolve/", {"resolution": "upheld", "note": "Confirmed with security"}
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["id"], body["status"], body["resolution_note"], body["resolved_by_id"]) == (
        str(dispute.pk),
        "upheld",
        "Confirmed with security",
        str(estate.treasurer.user_id),
    )
    assert body["resolved_at"] is not None
    dispute.refresh_from_db()
    assert (dispute.status, dispute.resolved_by_id) == ("upheld", estate.treasurer.user_id)
    mine = api_as(member).get(f"/api/v1/clusters/{estate.cluster.pk}/bills/{bill.pk}/").json()
    assert (mine["status"], mine["can_pay"]) == ("waived", False)
    stats = api_as(estate.admin).get(f"{mgmt(estate)}/bills/{bill.pk}/").json()["stats"]
    assert (stats["waived"], stats["outstanding"]) == (1, 2)
    note = Notification.objects.get(event="DISPUTE_RESOLVED")
    assert note.recipient_id == member.user_id
    again = api_as(estate.admin).post(
        f"{mgmt(estate)}/disputes/{dispute.pk}/resolve/", {"resolution": "rejected", "note": "changed my mind"}
    )
    assert_error(again, 409, "dispute_already_resolved")
    dispute.refresh_from_db()
    assert dispute.status == "upheld"


def test_resolve_dispute_rejected_leaves_the_bill_owed(estate: Estate) -> None:
    member = estate.residents[0]
    bill = estate.wide_bill()
    dispute = bill_dispute(access=access(member), bill=bill, reason="too high")
    response = api_as(estate.admin).post(
        f"{mgmt(estate)}/disputes/{dispute.pk}/resolve/", {"resolution": "rejected", "note": "Agreed at the AGM"}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "rejected"
    mine = api_as(member).get(f"/api/v1/clusters/{estate.cluster.pk}/bills/{bill.pk}/").json()
    assert mine["status"] == "pending"


def test_resolve_dispute_refusals(estate: Estate, other_estate: Estate) -> None:
    dispute = bill_dispute(access=access(estate.residents[0]), bill=estate.wide_bill(), reason="x")
    path = f"{mgmt(estate)}/disputes/{dispute.pk}/resolve/"
    admin = api_as(estate.admin)
    for payload, field in (
        ({"resolution": "maybe", "note": "n"}, "resolution"),
        ({"resolution": "open", "note": "n"}, "resolution"),
        ({"resolution": "upheld"}, "note"),
        ({"resolution": "upheld", "note": "  "}, "note"),
        ({"note": "n"}, "resolution"),
    ):
        assert_error(admin.post(path, payload), 400, "validation_error", (field,))
    assert_error(api_as(estate.auditor).post(path, {"resolution": "upheld", "note": "n"}), 403, "permission_denied")
    foreign = bill_dispute(access=access(other_estate.residents[0]), bill=other_estate.wide_bill(), reason="y")
    ok = {"resolution": "upheld", "note": "n"}
    assert_error(admin.post(f"{mgmt(estate)}/disputes/{foreign.pk}/resolve/", ok), 404, "not_found")
    assert_error(admin.post(f"{mgmt(estate)}/disputes/garbage/resolve/", ok), 404, "not_found")
    assert set(BillDispute.objects.values_list("status", flat=True)) == {"open"}


# --- transactions ------------------------------------------------------------------------------


@pytest.fixture
def ledger(estate: Estate) -> dict[str, Any]:
    r0, r1, _ = estate.residents
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    other = estate.wide_bill(amount=Decimal("10.00"))
    d0 = estate.fund(r0, "20000.00")
    d1 = estate.fund(r1, "100.00")
    bill_acknowledge(access=access(r0), bill=bill)
    bill_acknowledge(access=access(r1), bill=bill)
    paid = pay(r0, bill)
    failed = None
    try:
        pay(r1, bill)
    except Exception:
        failed = Transaction.objects.get(payer=r1.user, status="failed")
    assert failed is not None
    return {"bill": bill, "other": other, "d0": d0, "d1": d1, "paid": paid, "failed": failed}


def test_transaction_list_rows(estate: Estate, ledger: dict[str, Any]) -> None:
    response = api_as(estate.auditor).get(f"{mgmt(estate)}/transactions/")
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    expected = [ledger[name] for name in ("failed", "paid", "d1", "d0")]
    assert ids(rows) == [str(tx.pk) for tx in expected]
    for row in rows:
        assert set(row) >= TRANSACTION_FIELDS
        assert row["currency"] == "NGN"
    failed, paid, _d1, d0 = rows
    assert {k: paid[k] for k in ("type", "status", "amount", "balance_after", "bill_id", "user_id")} == {
        "type": "bill_payment",
        "status": "completed",
        "amount": "-15000.00",
        "balance_after": "5000.00",
        "bill_id": str(ledger["bill"].pk),
        "user_id": str(estate.residents[0].user_id),
    }
    assert {k: failed[k] for k in ("type", "status", "amount", "balance_after", "failure_reason")} == {
        "type": "bill_payment",
        "status": "failed",
        "amount": "-15000.00",
        "balance_after": None,
        "failure_reason": "insufficient_funds",
    }
    assert (d0["type"], d0["amount"], d0["initiated_by_id"], d0["note"]) == (
        "deposit",
        "20000.00",
        str(estate.treasurer.user_id),
        "cash",
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user_id": "R0"}, ["paid", "d0"]),
        ({"user_id": "R1"}, ["failed", "d1"]),
        ({"type": "deposit"}, ["d1", "d0"]),
        ({"type": "bill_payment"}, ["failed", "paid"]),
        ({"type": "refund"}, []),
        ({"status": "failed"}, ["failed"]),
        ({"status": "completed"}, ["paid", "d1", "d0"]),
        ({"bill_id": "BILL"}, ["failed", "paid"]),
        ({"bill_id": "OTHER"}, []),
        ({"user_id": "R1", "status": "completed"}, ["d1"]),
    ],
)
def test_transaction_list_filters(
    estate: Estate, ledger: dict[str, Any], params: dict[str, str], expected: list[str]
) -> None:
    values = {
        "R0": str(estate.residents[0].user_id),
        "R1": str(estate.residents[1].user_id),
        "BILL": str(ledger["bill"].pk),
        "OTHER": str(ledger["other"].pk),
    }
    query = {k: values.get(v, v) for k, v in params.items()}
    response = api_as(estate.treasurer).get(f"{mgmt(estate)}/transactions/", **query)
    assert response.status_code == 200, response.json()
    assert ids(response.json()["results"]) == [str(ledger[name].pk) for name in expected]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user_id": "abc"}, "user_id"),
        ({"type": "gift"}, "type"),
        ({"status": "lost"}, "status"),
        ({"bill_id": "12"}, "bill_id"),
    ],
)
def test_transaction_list_refuses_bad_filters(estate: Estate, params: dict[str, str], field: str) -> None:
    response = api_as(estate.admin).get(f"{mgmt(estate)}/transactions/", **params)
    assert_error(response, 400, "validation_error", (field,))


def test_transaction_list_needs_a_financial_permission(estate: Estate, other_estate: Estate) -> None:
    assert_error(api_as(estate.residents[0]).get(f"{mgmt(estate)}/transactions/"), 403, "permission_denied")
    other_estate.fund(other_estate.residents[0], "10.00")
    assert api_as(estate.admin).get(f"{mgmt(estate)}/transactions/").json()["results"] == []


def test_transaction_list_checks_the_permission_before_the_filters(estate: Estate) -> None:
    response = api_as(estate.residents[0]).get(f"{mgmt(estate)}/transactions/", type="gift")
    assert_error(response, 403, "permission_denied")


# --- wallet credit -----------------------------------------------------------------------------


def test_wallet_credit(estate: Estate) -> None:
    member = estate.residents[0]
    response = api_as(estate.treasurer).post(
        f"{mgmt(estate)}/wallets/{member.user_id}/credit/",
        {"amount": "2500.50", "note": "Bank transfer 12/03"},
        key=new_key("credit"),
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= TRANSACTION_FIELDS
    tx = Transaction.objects.get(pk=body["id"])
    assert {k: body[k] for k in TRANSACTION_FIELDS - {"id", "reference", "created_at"}} == {
        "type": "deposit",
        "status": "completed",
        "amount": "2500.50",
        "currency": "NGN",
        "balance_after": "2500.50",
        "bill_id": None,
        "user_id": str(member.user_id),
        "initiated_by_id": str(estate.treasurer.user_id),
        "failure_reason": "",
        "note": "Bank transfer 12/03",
        "retry_of_id": None,
        "reverses_id": None,
    }
    assert body["reference"] == tx.reference
    wallet = Wallet.objects.get(cluster=estate.cluster, user=member.user)
    assert wallet.balance == Decimal("2500.50")
    assert Transaction.objects.filter(wallet=wallet).count() == 1
    audit = AuditEvent.objects.get(action="wallet.credit", target_id=str(tx.pk))
    assert (audit.actor_id, audit.data["amount"]) == (estate.treasurer.user_id, "2500.50")
    second = api_as(estate.admin).post(
        f"{mgmt(estate)}/wallets/{member.user_id}/credit/", {"amount": "100"}, key=new_key("credit")
    )
    assert second.status_code == 201, second.json()
    assert (second.json()["amount"], second.json()["balance_after"], second.json()["note"]) == (
        "100.00",
        "2600.50",
        "",
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-10.00"}, "amount"),
        ({"amount": "10.001"}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": "1e400"}, "amount"),
        ({"amount": {"value": 1}}, "amount"),
        ({"amount": "10.00", "note": "n" * 2001}, "note"),
    ],
)
def test_wallet_credit_validation_moves_nothing(estate: Estate, payload: dict[str, Any], field: str) -> None:
    member = estate.residents[0]
    response = api_as(estate.treasurer).post(
        f"{mgmt(estate)}/wallets/{member.user_id}/credit/", payload, key=new_key("credit")
    )
    assert_error(response, 400, "validation_error", (field,))
    assert not Transaction.objects.exists()
    assert Wallet.objects.get(cluster=estate.cluster, user=member.user).balance == Decimal("0.00")


def test_wallet_credit_refusals(estate: Estate, other_estate: Estate) -> None:
    member = estate.residents[0]
    path = f"{mgmt(estate)}/wallets/{member.user_id}/credit/"
    body = {"amount": "10.00"}
    assert_error(api_as(estate.treasurer).post(path, body), 400, "idempotency_key_required")
    for caller in (estate.auditor, member):
        assert_error(api_as(caller).post(path, body, key=new_key()), 403, "permission_denied")
    treasurer = api_as(estate.treasurer)
    stranger = other_estate.residents[0]
    for user_id in ("not-a-uuid", str(uuid.uuid4()), str(stranger.user_id)):
        assert_error(treasurer.post(f"{mgmt(estate)}/wallets/{user_id}/credit/", body, key=new_key()), 404, "not_found")
    former = estate.residents[1]
    former.active = False
    former.deactivated_at = former.joined_at
    former.save()
    response = treasurer.post(f"{mgmt(estate)}/wallets/{former.user_id}/credit/", body, key=new_key())
    assert_error(response, 400, "validation_error", ("user_id",))
    assert not Transaction.objects.exists()


def test_wallet_credit_beyond_the_balance_limit_is_refused_cleanly(estate: Estate) -> None:
    member = estate.residents[0]
    path = f"{mgmt(estate)}/wallets/{member.user_id}/credit/"
    treasurer = api_as(estate.treasurer)
    assert treasurer.post(path, {"amount": "999999999999.99"}, key=new_key()).status_code == 201
    response = treasurer.post(path, {"amount": "999999999999.99"}, key=new_key())
    assert_error(response, 400, "validation_error", ("amount",))
    assert Transaction.objects.count() == 1


def test_wallet_credit_refuses_a_float_amount(estate: Estate) -> None:
    member = estate.residents[0]
    response = api_as(estate.treasurer).post(
        f"{mgmt(estate)}/wallets/{member.user_id}/credit/", {"amount": 10.1}, key=new_key()
    )
    assert_error(response, 400, "validation_error", ("amount",))
    assert not Transaction.objects.exists()


# --- bad input and pagination --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("post", "members/"),
        ("post", "bills/"),
        ("patch", "bills/BILL/"),
        ("post", "bills/BILL/cancel/"),
        ("patch", "members/MEMBER/"),
        ("post", "wallets/MEMBER/credit/"),
    ],
)
@pytest.mark.parametrize(
    "raw", ['{"title": ', "[1, 2, 3]", '"just a string"', "null", '{"amount": 1' + "0" * 5000 + "}", "\x00\x01"]
)
def test_bad_bodies_never_give_500(estate: Estate, method: str, suffix: str, raw: str) -> None:
    bill = estate.wide_bill()
    path = f"{mgmt(estate)}/" + suffix.replace("BILL", str(bill.pk)).replace("MEMBER", str(estate.residents[0].user_id))
    client = api_as(estate.admin).client
    response = getattr(client, method)(
        path, data=raw, content_type="application/json", headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 400, response.content
    assert_error(response, 400, "validation_error")
    bill.refresh_from_db()
    assert (bill.title, bill.cancelled_at) == ("Service charge November", None)
    assert Membership.objects.count() == 6
    assert not Transaction.objects.exists()


@pytest.mark.parametrize("suffix", ["bills/", "members/"])
def test_deeply_nested_json_is_a_validation_error(estate: Estate, suffix: str) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    response = api_as(estate.admin).client.post(f"{mgmt(estate)}/{suffix}", data=deep, content_type="application/json")
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/clusters/not-a-uuid/management/bills/",
        "/api/v1/clusters/00000000-0000-0000-0000-00000000000g/management/members/",
        "/api/v1/clusters/CLUSTER/management/bills/1/",
        "/api/v1/clusters/CLUSTER/management/bills/1/members/",
        "/api/v1/clusters/CLUSTER/management/disputes/%20/resolve/",
    ],
)
def test_non_uuid_ids_are_404(estate: Estate, path: str) -> None:
    path = path.replace("CLUSTER", str(estate.cluster.pk))
    api = api_as(estate.admin)
    response = api.post(path, {"resolution": "upheld", "note": "n"}) if "resolve" in path else api.get(path)
    assert_error(response, 404, "not_found")


def test_bill_list_pagination_walks_every_bill_once(estate: Estate) -> None:
    created = [estate.wide_bill(title=f"Bill {i}") for i in range(7)]
    api = api_as(estate.admin)
    first = api.get(f"{mgmt(estate)}/bills/", page_size=3).json()
    assert len(first["results"]) == 3
    assert first["previous"] is None
    assert first["next"] is not None
    rows = walk(api, f"{mgmt(estate)}/bills/", page_size=3)
    assert ids(rows) == [str(b.pk) for b in reversed(created)]
    second = api.client.get(first["next"]).json()
    back = api.client.get(second["previous"]).json()
    assert ids(back["results"]) == ids(first["results"])


def test_member_list_pagination_walks_every_member_once(estate: Estate) -> None:
    now = estate.admin.joined_at
    # Several members joined at the very same instant: the order must still be stable.
    for _ in range(5):
        MembershipFactory(cluster=estate.cluster, joined_at=now)
    expected = set(Membership.objects.filter(cluster=estate.cluster).values_list("user_id", flat=True))
    rows = walk(api_as(estate.admin), f"{mgmt(estate)}/members/", page_size=2)
    assert len(rows) == len(expected) == 11
    assert {uuid.UUID(r["id"]) for r in rows} == expected


def test_page_size_is_capped_at_100(estate: Estate) -> None:
    for _ in range(101):
        MembershipFactory(cluster=estate.cluster)
    api = api_as(estate.admin)
    big = api.get(f"{mgmt(estate)}/members/", page_size=1000).json()
    assert len(big["results"]) == 100
    assert big["next"] is not None
    default = api.get(f"{mgmt(estate)}/members/").json()
    assert len(default["results"]) == 50
    for junk in ("abc", "-5", "0", "99999999999999999999999"):
        response = api.get(f"{mgmt(estate)}/members/", page_size=junk)
        assert response.status_code == 200, response.content
        assert 1 <= len(response.json()["results"]) <= 100


def test_bad_cursor_is_not_a_500(estate: Estate) -> None:
    response = api_as(estate.admin).get(f"{mgmt(estate)}/bills/", cursor="definitely-not-a-cursor")
    assert response.status_code in (400, 404), response.content
    body = response.json()
    assert set(body) == {"error"}


@pytest.mark.parametrize("cursor", ["p=garbage", "o=5&p=", "r=1&p=x"])
def test_crafted_cursor_is_not_a_500(estate: Estate, cursor: str) -> None:
    estate.wide_bill()
    encoded = base64.b64encode(cursor.encode()).decode()
    response = api_as(estate.admin).get(f"{mgmt(estate)}/bills/", cursor=encoded)
    assert response.status_code in (400, 404), response.content
    assert response.json()["error"]["code"] in ("validation_error", "not_found")
