"""The Django admin: every page a platform operator can reach works, list pages do a
bounded number of queries, and the rows only services write stay read-only."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core import checks
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from levy.accounts.models import User
from levy.api.models import IdempotencyRecord
from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillAcknowledgement, BillDispute
from levy.estates.models import Cluster, Membership
from levy.notifications.models import Delivery, Notification, NotificationIntent
from levy.wallets.models import Transaction, Wallet
from tests.conftest import committed

pytestmark = pytest.mark.django_db

# A list page runs a fixed number of queries (session, user, counts, filters, the
# page); it must not grow with the rows it shows.
MAX_CHANGELIST_QUERIES = 12
VIEW_ONLY = (
    Transaction,
    AuditEvent,
    Wallet,
    Bill,
    BillAcknowledgement,
    BillDispute,
    Notification,
    NotificationIntent,
    Delivery,
    IdempotencyRecord,
)


@pytest.fixture
def operator(settings: Any) -> User:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with committed():  # run the notifications' fan-out, as the demo does after each commit
        call_command("seed_demo", stdout=io.StringIO())
    Group.objects.create(name="Support")
    # the demo makes no API calls: one recorded money-moving request, as the API keeps them
    IdempotencyRecord.objects.create(
        cluster=Cluster.objects.get(),
        user=User.objects.get(email="admin@palmgrove.test"),
        key="demo-credit-1",
        fingerprint="0" * 64,
        state=IdempotencyRecord.State.COMPLETED,
        response_status=201,
        response_body={"id": "demo"},
    )
    return User.objects.get(email="operator@levy.test")


@pytest.fixture
def operator_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_admin_configuration_passes_system_checks() -> None:
    errors = [message for message in checks.run_checks(tags=[checks.Tags.admin]) if message.is_serious()]
    assert errors == []


def test_every_registered_model_lists_searches_and_shows_a_row(operator_client: Client) -> None:
    assert {Cluster, Membership, User, *VIEW_ONLY} <= set(admin.site._registry)
    for model, model_admin in admin.site._registry.items():
        with CaptureQueriesContext(connection) as queries:
            response = operator_client.get(url(model, "changelist"))
        assert response.status_code == 200, model
        assert len(queries) <= MAX_CHANGELIST_QUERIES, (model, len(queries))
        if model_admin.search_fields:
            assert operator_client.get(url(model, "changelist"), {"q": "palm"}).status_code == 200, model
        obj = model._default_manager.order_by("pk").first()
        if obj is None:
            # Only a third-party model (auth groups are created above) may be empty.
            assert not model.__module__.startswith("levy."), f"the demo has no {model.__name__}"
            continue
        assert operator_client.get(url(model, "change", obj.pk)).status_code == 200, model


def test_list_filters_work(operator_client: Client) -> None:
    cluster = Cluster.objects.get(name="Palm Grove Estate")
    pages: list[tuple[Any, dict[str, Any]]] = [
        (Bill, {"scope": "estate", "cancelled": "no", "cluster__id__exact": cluster.pk}),
        (Bill, {"scope": "user", "cancelled": "yes"}),
        (Transaction, {"type__exact": "refund", "status__exact": "completed"}),
        (AuditEvent, {"area": "payment"}),
        (Notification, {"read_at__isempty": "1"}),
        (Membership, {"role__exact": "resident", "is_resident__exact": "1"}),
    ]
    for model, params in pages:
        response = operator_client.get(url(model, "changelist"), params)
        assert response.status_code == 200, (model, params)  # an unknown lookup redirects to ?e=1


@pytest.mark.parametrize("model", VIEW_ONLY)
def test_rows_written_only_by_services_are_view_only(operator_client: Client, model: Any) -> None:
    model_admin = admin.site._registry[model]
    obj = model._default_manager.order_by("pk").first()
    request = operator_client.get(url(model, "changelist")).wsgi_request
    assert model_admin.has_view_permission(request, obj)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request, obj)

    assert operator_client.get(url(model, "add")).status_code == 403
    assert operator_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert operator_client.get(url(model, "delete", obj.pk)).status_code == 403
    assert operator_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model._default_manager.filter(pk=obj.pk).exists()


def test_wallet_balance_cannot_be_edited(operator_client: Client) -> None:
    wallet = Wallet.objects.filter(balance__gt=0).first()
    assert wallet is not None
    before = wallet.balance
    response = operator_client.post(url(Wallet, "change", wallet.pk), {"balance": "999999.00"})
    assert response.status_code == 403
    wallet.refresh_from_db()
    assert wallet.balance == before


def test_bill_page_shows_terms_and_acknowledgements_but_no_status(operator_client: Client) -> None:
    bill = Bill.objects.filter(title__startswith="Service charge").get()
    acknowledger = BillAcknowledgement.objects.filter(bill=bill).select_related("user").first()
    assert acknowledger is not None
    response = operator_client.get(url(Bill, "change", bill.pk))
    assert response.status_code == 200
    page = response.content.decode()
    assert bill.reference in page
    assert "Estate-wide" in page
    assert "NGN 25,000.00" in page
    assert acknowledger.user.email in page
    assert "Delete" not in page

    listing = operator_client.get(url(Bill, "changelist")).content.decode()
    assert "column-status" not in listing


def test_user_admin_adds_an_email_login_user(operator_client: Client) -> None:
    response = operator_client.post(
        url(User, "add"),
        {
            "email": "New.Person@Example.TEST",
            "name": "New Person",
            "usable_password": "true",
            "password1": "a-long-demo-passphrase",
            "password2": "a-long-demo-passphrase",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="new.person@example.test")
    assert user.check_password("a-long-demo-passphrase")
    assert not user.is_staff
    assert operator_client.get(url(User, "change", user.pk)).status_code == 200

    duplicate = operator_client.post(
        url(User, "add"),
        {"email": "NEW.person@example.test", "usable_password": "false"},
    )
    assert duplicate.status_code == 200  # the form, with an error
    assert User.objects.filter(email__iexact="new.person@example.test").count() == 1


def test_user_page_lists_memberships(operator_client: Client) -> None:
    resident = Membership.objects.filter(role="resident").select_related("user", "cluster").first()
    assert resident is not None
    page = operator_client.get(url(User, "change", resident.user_id)).content.decode()
    assert "Palm Grove Estate" in page
    assert "Resident" in page


def test_the_operator_unlocks_a_locked_sign_in(operator_client: Client, operator: User) -> None:
    import datetime

    from django.utils import timezone

    from levy.accounts.models import SignInState

    locked = User.objects.get(email="admin@palmgrove.test")
    SignInState.objects.create(user=locked, failures=10, locked_until=timezone.now() + datetime.timedelta(minutes=9))
    untouched = Membership.objects.filter(role="resident").select_related("user").first()
    assert untouched is not None
    response = operator_client.post(
        url(User, "changelist"),
        {"action": "unlock_sign_in", "_selected_action": [str(locked.pk), str(untouched.user_id)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Unlocked 1 account(s)" in response.content.decode()
    state = SignInState.objects.get(user=locked)
    assert (state.failures, state.locked_until) == (0, None)
    assert not SignInState.objects.filter(user=untouched.user).exists()
    event = AuditEvent.objects.get(action="account.unlock")
    assert (event.actor_id, event.target_id, event.cluster_id) == (operator.pk, str(locked.pk), None)


def test_adding_an_estate_goes_through_the_service(operator_client: Client, operator: User) -> None:
    response = operator_client.post(url(Cluster, "add"), {"name": "Cedar Court", "currency": "ghs"})
    assert response.status_code == 302, response.content.decode()[:2000]
    cluster = Cluster.objects.get(name="Cedar Court")
    assert cluster.currency == "GHS"
    assert AuditEvent.objects.filter(action="cluster.create", target_id=str(cluster.pk), actor=operator).exists()
    # Fixed once created.
    operator_client.post(url(Cluster, "change", cluster.pk), {"name": "Cedar Court Phase 2", "currency": "USD"})
    cluster.refresh_from_db()
    assert (cluster.name, cluster.currency) == ("Cedar Court Phase 2", "GHS")
    assert operator_client.get(url(Cluster, "delete", cluster.pk)).status_code == 403


def test_appointing_a_member_goes_through_the_service(operator_client: Client, operator: User) -> None:
    cluster = Cluster.objects.get(name="Palm Grove Estate")
    person = User.objects.create_user("new.admin@palmgrove.test", name="New Admin")
    response = operator_client.post(
        url(Membership, "add"), {"cluster": cluster.pk, "user": person.pk, "role": "admin", "residency": ""}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = Membership.objects.get(cluster=cluster, user=person)
    assert membership.role == "admin"
    assert membership.is_resident is False  # the default for a staff role
    assert Wallet.objects.filter(cluster=cluster, user=person).exists()
    assert AuditEvent.objects.filter(action="member.add", target_id=str(membership.pk), actor=operator).exists()

    again = operator_client.post(url(Membership, "add"), {"cluster": cluster.pk, "user": person.pk, "role": "resident"})
    assert again.status_code == 200  # the form, with an error
    assert Membership.objects.filter(cluster=cluster, user=person).count() == 1
    assert operator_client.post(url(Membership, "change", membership.pk), {"role": "resident"}).status_code == 403
