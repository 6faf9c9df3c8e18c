"""Estate isolation, generated from the URL configuration.

Every URL pattern under ``/clusters/<str:cluster_id>/`` is found by walking the
resolver, and every HTTP method its view implements is called

- with every path parameter pointing at a real object of estate A, by someone who
  is not an active member of A (an admin of estate B, a former member of A), and
- with estate B's ``cluster_id`` but A's object ids, by B's admin and by someone who
  belongs to both estates (so only the URL's estate differs from their own access).

Each call must answer 404 ``not_found`` and leave the database exactly as it was.

``RECIPES`` says how to fill each estate-scoped URL's parameters; the suite fails if
the resolver has an estate-scoped URL that ``RECIPES`` does not name (a new endpoint
without isolation coverage) or if ``RECIPES`` names a URL that no longer exists.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from levy.accounts.models import SignInState, User
from levy.api.models import IdempotencyRecord
from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillAcknowledgement, BillDispute, BillSchedule
from levy.billing.payments import bill_pay
from levy.billing.schedules import schedule_create
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from levy.common.errors import InsufficientFundsError
from levy.estates.models import Cluster, MemberImport, Membership
from levy.estates.permissions import Role
from levy.notifications.models import Notification
from levy.payments.accounts import provider_account_save
from levy.payments.models import ProviderAccount, TopUp
from levy.payments.services import topup_start
from levy.wallets.models import Transaction, TransactionStatus, Wallet
from tests.api.conftest import Api, api_as
from tests.conftest import Estate, access, make_estate, new_key, schedule_input
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
ESTATE_PARAM = "<str:cluster_id>"
PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


# --- the database, before and after ---------------------------------------------------------


def db_snapshot() -> dict[str, dict[Any, Any]]:
    """Everything a refused request must leave alone, row by row."""

    def rows(model: Any, *fields: str) -> dict[Any, Any]:
        return {row[0]: row[1:] for row in model.objects.values_list("pk", *fields)}

    return {
        "clusters": rows(Cluster, "name", "currency", "bill_sequence"),
        "users": rows(User, "email", "name", "is_active", "password"),
        "memberships": rows(Membership, "role", "is_resident", "active", "joined_at", "deactivated_at"),
        "bills": rows(
            Bill,
            "title",
            "description",
            "category",
            "amount",
            "due_date",
            "allow_payment_after_due",
            "user_id",
            "cancelled_at",
            "cancellation_reason",
            "updated_at",
        ),
        "acknowledgements": rows(BillAcknowledgement, "bill_id", "user_id", "acknowledged_at"),
        "disputes": rows(BillDispute, "status", "resolved_at", "resolution_note"),
        "schedules": rows(BillSchedule, "title", "amount", "next_period", "paused_at", "ended_at", "end_reason"),
        "transactions": rows(Transaction, "type", "status", "amount", "balance_after", "bill_id"),
        "wallet_balances": rows(Wallet, "balance"),
        "notifications": rows(Notification, "event_key", "read_at"),
        "audit_events": rows(AuditEvent, "action"),
        "idempotency_records": rows(IdempotencyRecord, "key", "state", "response_status"),
        "provider_accounts": rows(ProviderAccount, "provider", "active", "secret_key_sealed", "updated_at"),
        "top_ups": rows(TopUp, "status", "amount", "transaction_id", "bill_outcome"),
        "sign_in_states": rows(SignInState, "failures", "locked_until"),
        "member_imports": rows(MemberImport, "status", "created_count"),
    }


# --- the URL configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str | None
    route: str
    params: tuple[str, ...]
    view_class: type | None
    methods: tuple[str, ...]


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        else:
            yield route, pattern


def estate_routes() -> list[Route]:
    """Every API URL pattern whose route is scoped to one estate (the pages have their
    own test, tests/web/test_page_isolation.py)."""
    found = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if ESTATE_PARAM not in route or not route.startswith("api/"):
            continue
        callback = pattern.callback
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        methods = tuple(m for m in HTTP_METHODS if view_class is not None and hasattr(view_class, m))
        found.append(Route(pattern.name, route, tuple(PARAM.findall(route)), view_class, methods))
    return found


ROUTES = estate_routes()


# --- how to fill each estate-scoped URL ------------------------------------------------------

# The kinds of object a path parameter can name (see ``World.ids``).
CLUSTER, BILL, MEMBER, DISPUTE, FAILED_TX = "cluster", "bill", "member", "dispute", "failed_transaction"
TOP_UP = "top_up"
RECEIPT_TX = "receipt_transaction"
SCHEDULE = "schedule"
MEMBER_IMPORT = "member_import"


def _due() -> str:
    return (estate_today() + datetime.timedelta(days=20)).isoformat()


@dataclass(frozen=True)
class Recipe:
    params: dict[str, str]
    # A plausible request body per write method; a callable is evaluated per request.
    bodies: dict[str, Any] = field(default_factory=dict)
    multipart: bool = False


RECIPES: dict[str, Recipe] = {
    "management-members": Recipe(
        {"cluster_id": CLUSTER},
        {"post": {"email": "intruder@example.test", "name": "Intruder", "role": Role.ADMIN}},
    ),
    "management-members-import-status": Recipe({"cluster_id": CLUSTER, "import_id": MEMBER_IMPORT}),
    "management-members-import": Recipe(
        {"cluster_id": CLUSTER},
        {"post": lambda: {"file": SimpleUploadedFile("m.csv", b"email,name,role,is_resident\nx@e.test,X,admin,no\n")}},
        multipart=True,
    ),
    "management-member": Recipe({"cluster_id": CLUSTER, "user_id": MEMBER}, {"patch": {"active": False}}),
    "management-member-unlock-sign-in": Recipe({"cluster_id": CLUSTER, "user_id": MEMBER}, {"post": {}}),
    "member-leave": Recipe({"cluster_id": CLUSTER}, {"post": {}}),
    "management-bills": Recipe(
        {"cluster_id": CLUSTER},
        {"post": lambda: {"title": "Rogue levy", "category": "other", "amount": "999.00", "due_date": _due()}},
    ),
    "management-bill": Recipe(
        {"cluster_id": CLUSTER, "bill_id": BILL}, {"patch": lambda: {"title": "Renamed", "due_date": _due()}}
    ),
    "management-bill-cancel": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}, {"post": {"reason": "Because"}}),
    "management-bill-members": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "management-dashboard": Recipe({"cluster_id": CLUSTER}),
    "management-disputes": Recipe({"cluster_id": CLUSTER}),
    "management-dispute-resolve": Recipe(
        {"cluster_id": CLUSTER, "dispute_id": DISPUTE}, {"post": {"resolution": "upheld", "note": "Waived"}}
    ),
    "management-transactions": Recipe({"cluster_id": CLUSTER}),
    "management-wallet-credit": Recipe(
        {"cluster_id": CLUSTER, "user_id": MEMBER}, {"post": {"amount": "100000.00", "note": "free money"}}
    ),
    "management-schedules": Recipe(
        {"cluster_id": CLUSTER},
        {
            "post": lambda: {
                "title": "Rogue levy",
                "category": "other",
                "amount": "999.00",
                "frequency": "monthly",
                "first_due_date": _due(),
            }
        },
    ),
    "management-schedule-pause": Recipe({"cluster_id": CLUSTER, "schedule_id": SCHEDULE}),
    "management-schedule-resume": Recipe({"cluster_id": CLUSTER, "schedule_id": SCHEDULE}),
    "management-schedule-end": Recipe({"cluster_id": CLUSTER, "schedule_id": SCHEDULE}, {"post": {"reason": "Mine"}}),
    "member-bills": Recipe({"cluster_id": CLUSTER}),
    "member-bill": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "member-bill-acknowledge": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "member-bill-dispute": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}, {"post": {"reason": "Not mine"}}),
    "member-bill-pay": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "member-wallet": Recipe({"cluster_id": CLUSTER}),
    "member-wallet-transactions": Recipe({"cluster_id": CLUSTER}),
    "member-transaction-retry": Recipe({"cluster_id": CLUSTER, "transaction_id": FAILED_TX}),
    "management-payment-providers": Recipe(
        {"cluster_id": CLUSTER}, {"put": {"provider": "paystack", "secret_key": "sk_test_intruder", "active": True}}
    ),
    "management-top-ups": Recipe({"cluster_id": CLUSTER}),
    "management-transaction-refund": Recipe(
        {"cluster_id": CLUSTER, "transaction_id": RECEIPT_TX}, {"post": {"reason": "Because"}}
    ),
    "management-payment-anomalies": Recipe({"cluster_id": CLUSTER}),
    "member-top-ups": Recipe({"cluster_id": CLUSTER}, {"post": {"amount": "1000.00"}}),
    "member-top-up": Recipe({"cluster_id": CLUSTER, "top_up_id": TOP_UP}),
    "member-bill-pay-by-card": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "member-transaction-receipt": Recipe({"cluster_id": CLUSTER, "transaction_id": RECEIPT_TX}),
    "member-wallet-statement-pdf": Recipe({"cluster_id": CLUSTER}),
    "member-wallet-statement-csv": Recipe({"cluster_id": CLUSTER}),
    "management-transaction-receipt": Recipe({"cluster_id": CLUSTER, "transaction_id": RECEIPT_TX}),
    "management-member-statement-pdf": Recipe({"cluster_id": CLUSTER, "user_id": MEMBER}),
    "management-member-statement-csv": Recipe({"cluster_id": CLUSTER, "user_id": MEMBER}),
    "management-bills-export": Recipe({"cluster_id": CLUSTER}),
    "management-bill-members-export": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "management-members-export": Recipe({"cluster_id": CLUSTER}),
    "management-transactions-export": Recipe({"cluster_id": CLUSTER}),
}


# --- the two estates -------------------------------------------------------------------------


@dataclass
class World:
    a: Estate
    b: Estate
    bill: Bill  # estate-wide, in A; acknowledged and disputed by the dual member
    other_bill: Bill  # estate-wide, in A; acknowledged and failed to pay by the dual member
    dispute: BillDispute  # open, in A, by the dual member
    failed: Transaction  # failed payment in A, by the dual member
    deposit: Transaction  # completed top-up in A, of the dual member (it has a receipt)
    dual: Membership  # a resident of A who is also a (resident) admin of B
    former: Membership  # a deactivated member of A
    schedule: BillSchedule  # a paused estate-wide schedule of A
    member_import: MemberImport  # a finished members import of A
    top_up: TopUp  # a pending top-up in A, by the dual member

    def ids(self, kind: str, cluster: Cluster) -> Any:
        return {
            CLUSTER: cluster.pk,
            BILL: self.bill.pk,
            MEMBER: self.a.residents[0].user_id,
            DISPUTE: self.dispute.pk,
            FAILED_TX: self.failed.pk,
            TOP_UP: self.top_up.pk,
            RECEIPT_TX: self.deposit.pk,
            SCHEDULE: self.schedule.pk,
            MEMBER_IMPORT: self.member_import.pk,
        }[kind]


def build_world() -> World:
    a = make_estate(residents=3)
    b = make_estate(residents=2)
    # B's admin also lives in B, so the member endpoints run their full lookups for them.
    Membership.objects.filter(pk=b.admin.pk).update(is_resident=True)
    b.admin.refresh_from_db()
    dual_in_a = a.residents[2]
    dual = MembershipFactory(cluster=b.cluster, user=dual_in_a.user, role=Role.ADMIN, is_resident=True)
    former = a.add()
    Membership.objects.filter(pk=former.pk).update(active=False, deactivated_at=timezone.now())

    bill = a.wide_bill(title="Service charge")
    other_bill = a.wide_bill(title="Security levy", amount=Decimal("7000.00"))
    for member in (a.residents[0], dual_in_a):
        bill_acknowledge(access=access(member), bill=bill)
    bill_acknowledge(access=access(dual_in_a), bill=other_bill)
    dispute = bill_dispute(access=access(dual_in_a), bill=bill, reason="I was away")
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(dual_in_a), bill=other_bill, idempotency_key=new_key("pay"))
    failed = Transaction.objects.get(payer=dual_in_a.user, status=TransactionStatus.FAILED)
    # Money in every wallet, and a notification in every inbox, so that a leak would show.
    for estate in (a, b):
        for member in estate.residents:
            estate.fund(member, "50000.00")
    b.fund(b.admin, "50000.00")
    b.wide_bill(title="B's own bill")
    # Both estates take payments by card; the dual member has a top-up pending in A.
    for estate in (a, b):
        provider_account_save(access=access(estate.admin), provider="paystack", secret_key=new_key("sk"), active=True)
    top_up = topup_start(access=access(dual_in_a), amount="3000.00", idempotency_key=new_key("topup"))
    deposit = Transaction.objects.get(cluster=a.cluster, payer=dual_in_a.user, type="deposit")
    schedule = schedule_create(access=access(a.admin), data=schedule_input())
    # Paused, so that resuming it would change it too.
    BillSchedule.objects.filter(pk=schedule.pk).update(paused_at=timezone.now())
    return World(
        a=a,
        b=b,
        bill=bill,
        other_bill=other_bill,
        dispute=dispute,
        failed=failed,
        deposit=deposit,
        dual=dual,
        former=former,
        schedule=schedule,
        member_import=MemberImport.objects.create(
            cluster=a.cluster, created_by=a.admin.user, status=MemberImport.Status.SUCCEEDED
        ),
        top_up=top_up,
    )


def fill(route: Route, world: World, cluster: Cluster) -> str:
    recipe = RECIPES[route.name or ""]
    return "/" + PARAM.sub(lambda m: str(world.ids(recipe.params[m.group(1)], cluster)), route.route)


def call(api: Api, route: Route, method: str, path: str) -> Any:
    recipe = RECIPES[route.name or ""]
    if method not in WRITE_METHODS:
        return getattr(api.client, method)(path)
    body = recipe.bodies.get(method, {})
    body = body() if callable(body) else body
    headers = {"Idempotency-Key": new_key("isolation")}
    fmt = "multipart" if recipe.multipart else "json"
    return getattr(api.client, method)(path, body, format=fmt, headers=headers)


def assert_not_found_and_unchanged(api: Api, route: Route, method: str, path: str) -> None:
    before = db_snapshot()
    response = call(api, route, method, path)
    assert response.status_code == 404, (method.upper(), path, response.status_code, response.content[:500])
    assert response.json()["error"]["code"] == "not_found", response.json()
    assert db_snapshot() == before, f"{method.upper()} {path} changed the database"


CASES = [pytest.param(r, m, id=f"{r.name}:{m.upper()}") for r in ROUTES for m in r.methods]
OBJECT_CASES = [
    pytest.param(r, m, id=f"{r.name}:{m.upper()}") for r in ROUTES for m in r.methods if set(r.params) - {"cluster_id"}
]


# --- coverage guard --------------------------------------------------------------------------


def test_every_estate_scoped_url_has_a_recipe() -> None:
    assert ROUTES, "no estate-scoped URL found: has <str:cluster_id> been renamed?"
    unnamed = [r.route for r in ROUTES if not r.name]
    assert not unnamed, f"estate-scoped URLs without a name cannot be covered: {unnamed}"
    names = [r.name for r in ROUTES]
    assert len(names) == len(set(names)), f"duplicate URL names: {names}"
    missing = sorted(set(names) - set(RECIPES))
    assert not missing, f"estate-scoped URLs without an isolation recipe in RECIPES: {missing}"
    stale = sorted(set(RECIPES) - set(names))
    assert not stale, f"RECIPES names URLs that no longer exist: {stale}"
    for route in ROUTES:
        assert set(route.params) == set(RECIPES[route.name or ""].params), (route.name, route.params)
        assert route.view_class is not None, f"{route.name}: not a class-based view, cannot list its methods"
        assert route.methods, f"{route.name}: its view implements no HTTP method"
        unknown = set(RECIPES[route.name or ""].bodies) - set(route.methods)
        assert not unknown, f"{route.name}: RECIPES has bodies for methods the view lacks: {unknown}"


def test_the_url_walk_sees_every_endpoint_of_api_md() -> None:
    """A sanity check of the walk itself, against a few known routes."""
    routes = {r.name: r for r in ROUTES}
    assert (
        routes["management-bill-cancel"].route
        == "api/v1/clusters/<str:cluster_id>/management/bills/<str:bill_id>/cancel/"
    )
    assert routes["management-bill"].methods == ("get", "patch")
    assert routes["management-members"].methods == ("get", "post")
    assert routes["member-bill-pay"].methods == ("post",)
    assert len(CASES) >= 23


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["admin_of_other_estate", "former_member"])
@pytest.mark.parametrize(("route", "method"), CASES)
def test_outsider_gets_404_and_nothing_changes(route: Route, method: str, caller: str) -> None:
    world = build_world()
    who = {"admin_of_other_estate": world.b.admin, "former_member": world.former}[caller]
    assert not Membership.objects.filter(cluster=world.a.cluster, user=who.user, active=True).exists()
    path = fill(route, world, world.a.cluster)
    assert_not_found_and_unchanged(api_as(who.user), route, method, path)


@pytest.mark.parametrize("caller", ["admin_of_other_estate", "member_of_both_estates"])
@pytest.mark.parametrize(("route", "method"), OBJECT_CASES)
def test_other_estates_object_ids_under_own_estate_get_404(route: Route, method: str, caller: str) -> None:
    world = build_world()
    who = {"admin_of_other_estate": world.b.admin, "member_of_both_estates": world.dual}[caller]
    path = fill(route, world, world.b.cluster)
    assert_not_found_and_unchanged(api_as(who.user), route, method, path)


def test_the_same_calls_succeed_for_the_objects_owner_estate() -> None:
    """The 404s above are about the estate, not broken fixtures: A's own admin reads
    A's objects and the dual member reaches their own bill through A's URL."""
    world = build_world()
    base = f"/api/v1/clusters/{world.a.cluster.pk}"
    admin = api_as(world.a.admin)
    assert admin.get(f"{base}/management/bills/{world.bill.pk}/").status_code == 200
    assert admin.get(f"{base}/management/bills/{world.bill.pk}/members/").status_code == 200
    dual = api_as(world.dual.user)
    assert dual.get(f"{base}/bills/{world.bill.pk}/").status_code == 200
    response = dual.post(f"{base}/transactions/{world.failed.pk}/retry/", key=new_key())
    assert response.status_code == 201, response.json()


def test_someone_elses_notification_is_not_found() -> None:
    world = build_world()
    theirs = Notification.objects.filter(recipient=world.a.residents[0].user).first()
    assert theirs is not None
    before = db_snapshot()
    response = api_as(world.b.admin).post(f"/api/v1/notifications/{theirs.pk}/read/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert db_snapshot() == before
    listed = api_as(world.b.admin).get("/api/v1/notifications/").json()["results"]
    assert listed, "B's admin has notifications of their own"
    assert str(theirs.pk) not in {n["id"] for n in listed}


def test_other_estates_ids_in_bodies_and_filters_find_nothing() -> None:
    """B's admin names A's member and A's bill in request bodies and query filters."""
    world = build_world()
    base = f"/api/v1/clusters/{world.b.cluster.pk}/management"
    admin = api_as(world.b.admin)
    theirs = world.a.residents[0]
    own_bill = Bill.objects.get(cluster=world.b.cluster)
    before = db_snapshot()
    body = {"title": "Their bill", "category": "other", "amount": "10.00", "due_date": _due()}
    created = admin.post(f"{base}/bills/", {**body, "user_id": str(theirs.user_id)})
    assert created.status_code == 400, created.json()
    assert "user_id" in created.json()["error"]["details"]["fields"]
    moved = admin.patch(f"{base}/bills/{own_bill.pk}/", {"user_id": str(theirs.user_id)})
    assert moved.status_code == 400, moved.json()
    assert "user_id" in moved.json()["error"]["details"]["fields"]
    assert db_snapshot() == before
    for path, params in [
        ("bills/", {"user_id": theirs.user_id}),
        ("bills/", {"search": world.bill.title}),
        ("members/", {"search": theirs.user.email}),
        ("transactions/", {"user_id": theirs.user_id}),
        ("transactions/", {"bill_id": world.bill.pk}),
        ("transactions/", {"status": "failed"}),
        ("disputes/", {"status": "open"}),
    ]:
        response = admin.get(f"{base}/{path}", **params)
        assert response.status_code == 200, (path, params, response.json())
        assert response.json()["results"] == [], (path, params)


def test_adding_another_estates_person_changes_nothing_of_theirs() -> None:
    """An admin may add someone who already has an account elsewhere, but cannot set
    that person's password or name (that would be a takeover across estates)."""
    world = build_world()
    person = world.a.residents[0].user
    account = User.objects.values("password", "name", "email", "is_active").get(pk=person.pk)
    response = api_as(world.b.admin).post(
        f"/api/v1/clusters/{world.b.cluster.pk}/management/members/",
        {"email": person.email.upper(), "name": "Someone Else", "role": "resident", "password": "chosen-by-b"},
    )
    assert response.status_code == 201, response.json()
    assert User.objects.values("password", "name", "email", "is_active").get(pk=person.pk) == account
    signed_in = Api().client.post("/api/v1/auth/token/", {"email": person.email, "password": "chosen-by-b"})
    assert signed_in.status_code == 401


def test_an_outsiders_404s_count_against_their_rate_limit(settings: Any) -> None:
    world = build_world()
    settings.LEVY_RATE_LIMITS = {**settings.LEVY_RATE_LIMITS, "user": "5/min"}
    api = api_as(world.b.admin)
    path = f"/api/v1/clusters/{world.a.cluster.pk}/management/bills/{world.bill.pk}/"
    statuses = [api.client.get(path).status_code for _ in range(8)]
    assert statuses[:5] == [404] * 5
    assert statuses[5:] == [429] * 3, statuses
