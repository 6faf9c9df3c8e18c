"""Roles, permissions, tenancy, and the estate services."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from levy.access import access_membership
from levy.accounts.models import User
from levy.audit.models import AuditEvent
from levy.common.errors import NotFoundError, PermissionDeniedError, RuleViolation, ValidationError
from levy.estates.access import access_cluster, has_permission, require_permission
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import (
    EstatePermissions,
    MembersPermissions,
    PaymentsPermissions,
    Role,
    default_is_resident,
    permissions_for_role,
    roles_with,
)
from levy.estates.services import cluster_create
from levy.members.services import member_add, member_update
from levy.wallets.models import Wallet
from tests.conftest import Estate, access
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

P = PaymentsPermissions


def test_roles_are_sets_of_named_permissions() -> None:
    assert permissions_for_role(Role.ADMIN) == {*P, MembersPermissions.ManageMembers, EstatePermissions.ManageProviders}
    assert permissions_for_role(Role.TREASURER) == set(P)
    assert permissions_for_role(Role.AUDITOR) == {P.ViewPayments}
    assert permissions_for_role(Role.RESIDENT) == set()
    assert permissions_for_role("janitor") == set()
    assert roles_with(P.ManageBill) == [Role.ADMIN, Role.TREASURER]
    assert roles_with(MembersPermissions.ManageMembers) == [Role.ADMIN]
    assert roles_with(EstatePermissions.ManageProviders) == [Role.ADMIN]
    assert default_is_resident(Role.RESIDENT) and not default_is_resident(Role.TREASURER)


@pytest.mark.parametrize(
    ("role", "granted"),
    [
        (
            "admin",
            {"ManageBill", "ManageWallet", "ManageTransaction", "ViewPayments", "ManageMembers", "ManageProviders"},
        ),
        ("treasurer", {"ManageBill", "ManageWallet", "ManageTransaction", "ViewPayments"}),
        ("auditor", {"ViewPayments"}),
        ("resident", set()),
    ],
)
def test_has_permission_answers_per_estate(estate: Estate, other_estate: Estate, role: str, granted: set) -> None:
    member = {"admin": estate.admin, "treasurer": estate.treasurer, "auditor": estate.auditor}.get(
        role, estate.residents[0]
    )
    for perm in [*P, MembersPermissions.ManageMembers, EstatePermissions.ManageProviders]:
        assert has_permission(member.user, estate.cluster, perm) == (perm.name in granted)
        # nothing in an estate they do not belong to
        assert not has_permission(member.user, other_estate.cluster, perm)


def test_one_person_holds_different_roles_in_different_estates(estate: Estate, other_estate: Estate) -> None:
    person = estate.admin.user
    other_estate.add(user=person, role=Role.RESIDENT)
    assert has_permission(person, estate.cluster, P.ManageBill)
    assert not has_permission(person, other_estate.cluster, P.ManageBill)
    assert require_permission(person, estate.cluster, P.ManageBill).cluster == estate.cluster
    with pytest.raises(PermissionDeniedError):
        require_permission(person, other_estate.cluster, P.ManageBill)


def test_access_is_refused_as_not_found_outside_ones_estates(estate: Estate, other_estate: Estate) -> None:
    outsider = other_estate.admin.user
    for cluster_id in (estate.cluster.pk, uuid.uuid4(), "garbage", None):
        with pytest.raises(NotFoundError):
            access_cluster(outsider, cluster_id)
    gone = estate.residents[0]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    with pytest.raises(NotFoundError):
        access_cluster(gone.user, estate.cluster.pk)
    inactive_user = estate.residents[1].user
    User.objects.filter(pk=inactive_user.pk).update(is_active=False)
    inactive_user.refresh_from_db()
    with pytest.raises(NotFoundError):
        access_cluster(inactive_user, estate.cluster.pk)
    with pytest.raises(NotFoundError):
        access_membership(access(estate.admin), other_estate.residents[0].user_id)


def test_platform_operator_may_only_manage_members(estate: Estate) -> None:
    operator = UserFactory(is_superuser=True, is_staff=True)
    grant = access_cluster(operator, estate.cluster.pk)
    assert grant.membership is None
    assert grant.permissions == {MembersPermissions.ManageMembers}
    assert not grant.can_read_finances()
    with pytest.raises(NotFoundError):
        grant.require_member()
    with pytest.raises(NotFoundError):
        access_cluster(operator, uuid.uuid4())


def test_operator_creates_an_estate_and_appoints_its_first_admin() -> None:
    operator = UserFactory(is_superuser=True, is_staff=True)
    cluster = cluster_create(operator=operator, name="  Palm Grove ", currency="ngn")
    assert (cluster.name, cluster.currency) == ("Palm Grove", "NGN")
    admin = member_add(access=access_cluster(operator, cluster.pk), email="Chief@Estate.test", name="Ada", role="admin")
    assert (admin.role, admin.is_resident, admin.user.email) == ("admin", False, "chief@estate.test")
    assert Wallet.objects.filter(cluster=cluster, user=admin.user).exists()
    assert list(AuditEvent.objects.order_by("created_at").values_list("action", flat=True)) == [
        "cluster.create",
        "member.add",
    ]
    assert Cluster.objects.get().currency == "NGN"


def test_estate_creation_is_for_the_operator_and_validated() -> None:
    with pytest.raises(PermissionDeniedError):
        cluster_create(operator=UserFactory(), name="X")
    operator = UserFactory(is_superuser=True)
    with pytest.raises(ValidationError) as err:
        cluster_create(operator=operator, name=" ", currency="NAIRA")
    assert set(err.value.fields) == {"name", "currency"}
    with pytest.raises(ValidationError):
        cluster_create(operator=operator, name="x" * 201)
    assert cluster_create(operator=operator, name="Default currency").currency == "NGN"


def test_member_add_defaults_residency_by_role_and_refuses_duplicates(estate: Estate) -> None:
    admin = access(estate.admin)
    resident = member_add(access=admin, email="new@x.test", password="s3cret-pass-word")
    assert (resident.role, resident.is_resident) == ("resident", True)
    assert resident.user.check_password("s3cret-pass-word")
    committee = member_add(access=admin, email="chair@x.test", role="treasurer", is_resident=True)
    assert committee.is_resident
    with pytest.raises(ValidationError) as err:
        member_add(access=admin, email="NEW@x.test")
    assert list(err.value.fields) == ["email"]
    for bad in ({"email": "nope"}, {"email": "a@b.test", "role": "mayor"}):
        with pytest.raises(ValidationError):
            member_add(access=admin, **bad)
    with pytest.raises(PermissionDeniedError):
        member_add(access=access(estate.treasurer), email="x@y.test")


def test_readding_a_deactivated_member_restarts_their_membership(estate: Estate) -> None:
    admin = access(estate.admin)
    member = estate.residents[0]
    before = member.joined_at
    member_update(access=admin, membership=member, active=False)
    member.refresh_from_db()
    assert (member.active, member.deactivated_at is not None) == (False, True)
    again = member_add(access=admin, email=member.user.email, role="resident")
    assert again.pk == member.pk
    assert again.active and again.deactivated_at is None and again.joined_at > before


def test_member_update_changes_role_and_residency_and_audits(estate: Estate) -> None:
    admin = access(estate.admin)
    member = estate.residents[0]
    updated = member_update(access=admin, membership=member, role="auditor", is_resident=False)
    assert (updated.role, updated.is_resident) == ("auditor", False)
    assert AuditEvent.objects.get(action="member.update").data == {"role": "auditor", "is_resident": False}
    unchanged = member_update(access=admin, membership=updated, role="auditor")
    assert unchanged.role == "auditor"
    assert AuditEvent.objects.filter(action="member.update").count() == 1
    with pytest.raises(RuleViolation):  # the estate's last admin
        member_update(access=admin, membership=estate.admin, active=False)
    estate.add(role="admin")
    with pytest.raises(ValidationError):  # with another admin: still not oneself
        member_update(access=admin, membership=estate.admin, active=False)
    with pytest.raises(ValidationError):
        member_update(access=admin, membership=member, role="boss")
    member_update(access=admin, membership=member, active=False)
    member.refresh_from_db()
    with pytest.raises(ValidationError):
        member_update(access=admin, membership=member, active=True)
    with pytest.raises(PermissionDeniedError):
        member_update(access=access(estate.auditor), membership=estate.residents[1], role="admin")


def test_member_update_refuses_another_estates_member(estate: Estate, other_estate: Estate) -> None:
    with pytest.raises(PermissionDeniedError):
        member_update(access=access(estate.admin), membership=other_estate.residents[0], role="admin")


def test_user_manager_requires_an_email_and_makes_superusers() -> None:
    with pytest.raises(ValueError, match="email"):
        User.objects.create_user(email="")
    boss = User.objects.create_superuser(email="Boss@Levy.Test", password="x-long-password")
    assert (boss.email, boss.is_staff, boss.is_superuser, str(boss)) == ("boss@levy.test", True, True, "boss@levy.test")
    assert boss.get_full_name() == boss.get_short_name() == "boss@levy.test"
    assert not User.objects.create_user(email="nopass@levy.test").has_usable_password()


def test_the_caller_and_their_membership_are_read_in_one_statement(estate: Estate, other_estate: Estate) -> None:
    """The bearer-token authentication reads the user with their membership of the URL's
    estate; ``access_cluster`` uses it once, then reads afresh."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from levy.estates.access import user_with_membership

    member = estate.residents[0]
    with CaptureQueriesContext(connection) as statements:
        user = user_with_membership(member.user_id, estate.cluster.pk)
        assert user is not None and user.pk == member.user_id
        first = access_cluster(user, estate.cluster.pk)
    assert len(statements.captured_queries) == 1
    assert (first.membership.pk, first.cluster.pk, first.permissions) == (
        member.pk,
        estate.cluster.pk,
        permissions_for_role(Role.RESIDENT),
    )
    with CaptureQueriesContext(connection) as statements:
        again = access_cluster(user, estate.cluster.pk)  # taken once: read again
    assert len(statements.captured_queries) == 1
    assert again.membership.pk == member.pk

    # another estate, an estate that does not exist, a deactivated member: 404 as ever
    for cluster_id in (other_estate.cluster.pk, uuid.uuid4()):
        outsider = user_with_membership(member.user_id, cluster_id)
        with pytest.raises(NotFoundError):
            access_cluster(outsider, cluster_id)
    gone = estate.residents[1]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    with pytest.raises(NotFoundError):
        access_cluster(user_with_membership(gone.user_id, estate.cluster.pk), estate.cluster.pk)
    # read for one estate, asked for another: the other is read, not taken from the first
    user = user_with_membership(member.user_id, estate.cluster.pk)
    with pytest.raises(NotFoundError):
        access_cluster(user, other_estate.cluster.pk)
    assert user_with_membership(uuid.uuid4(), estate.cluster.pk) is None
