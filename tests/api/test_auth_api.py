"""Sign-in, the caller, estates, the notification inbox and the health checks, over HTTP."""

from __future__ import annotations

import datetime
import itertools
import uuid
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from levy.accounts import signin_guard
from levy.audit.models import AuditEvent
from levy.estates.models import Cluster
from levy.estates.permissions import Role
from levy.notifications.models import Notification
from tests.api.conftest import api_as, assert_error, walk
from tests.api.test_rate_limits import limits, start_of_a_fresh_window
from tests.conftest import Estate, make_estate
from tests.factories import TEST_PASSWORD, ClusterFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

_addresses = itertools.count(1)


def fresh_ip() -> str:
    """A loopback address of its own, so that the per-IP sign-in limit (counted in the
    shared Redis) is not shared with other tests or other test runs."""
    n = next(_addresses) + uuid.uuid4().int % 50000
    return f"127.{(n >> 16) % 200 + 50}.{(n >> 8) % 256}.{n % 256 or 1}"


def sign_in(email: str, password: str, ip: str | None = None) -> Any:
    return api_as(None).post(
        "/api/v1/auth/token/", {"email": email, "password": password}, REMOTE_ADDR=ip or fresh_ip()
    )


def bearer(token: str) -> Any:
    api = api_as(None)
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


# --- token -------------------------------------------------------------------------------------


def test_token_pair_for_good_credentials(estate: Estate) -> None:
    user = estate.residents[0].user
    response = sign_in(user.email, TEST_PASSWORD)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) >= {"access", "refresh"}
    me = bearer(body["access"]).get("/api/v1/me/")
    assert me.status_code == 200, me.json()
    assert me.json()["id"] == str(user.pk)


def test_sign_in_email_is_case_insensitive(estate: Estate) -> None:
    user = estate.residents[0].user
    response = sign_in(user.email.capitalize(), TEST_PASSWORD)
    assert response.status_code == 200, response.content
    assert set(response.json()) >= {"access", "refresh"}


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "inactive user"])
def test_bad_credentials_are_401_in_the_error_shape(estate: Estate, case: str) -> None:
    user = estate.residents[0].user
    email, password = user.email, TEST_PASSWORD
    if case == "wrong password":
        password = "not-the-password"
    elif case == "unknown email":
        email = "nobody@example.test"
    elif case == "inactive user":
        user.is_active = False
        user.save(update_fields=["is_active"])
    response = sign_in(email, password)
    body = assert_error(response, 401, "not_authenticated")
    assert body["error"]["details"] == {}
    assert set(body) == {"error"}
    assert "access" not in response.content.decode()
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [({}, ("email", "password")), ({"email": "a@example.test"}, ("password",)), ({"password": "x"}, ("email",))],
)
def test_token_input_is_validated(db: None, payload: dict[str, Any], fields: tuple[str, ...]) -> None:
    response = api_as(None).post("/api/v1/auth/token/", payload, REMOTE_ADDR=fresh_ip())
    assert_error(response, 400, "validation_error", fields)


def test_malformed_token_request_is_400(db: None) -> None:
    response = api_as(None).client.post(
        "/api/v1/auth/token/", data="{email", content_type="application/json", REMOTE_ADDR=fresh_ip()
    )
    assert_error(response, 400, "validation_error")


def test_deeply_nested_json_to_the_token_endpoint_is_400(db: None) -> None:
    body = '{"email": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = api_as(None).client.post(
        "/api/v1/auth/token/", data=body, content_type="application/json", REMOTE_ADDR=fresh_ip()
    )
    assert_error(response, 400, "validation_error")


def test_refresh(estate: Estate) -> None:
    user = estate.admin.user
    pair = sign_in(user.email, TEST_PASSWORD).json()
    response = api_as(None).post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, REMOTE_ADDR=fresh_ip())
    assert response.status_code == 200, response.json()
    access = response.json()["access"]
    assert bearer(access).get("/api/v1/me/").json()["email"] == user.email


@pytest.mark.parametrize("case", ["deactivated", "no such user", "not a user id"])
def test_refresh_for_an_account_that_is_not_active_is_401(estate: Estate, case: str) -> None:
    """The refresh token is valid, but the account it names can no longer sign in
    (``signin_guard.account_active``): refused like a bad token, and counted against
    the address as one."""
    user = estate.residents[0].user
    token = RefreshToken.for_user(user)
    if case == "deactivated":
        user.is_active = False
        user.save(update_fields=["is_active"])
    else:
        token["user_id"] = str(uuid.uuid4()) if case == "no such user" else "not-a-uuid"
    assert signin_guard.account_active(user_id=user.pk) is (case != "deactivated")
    ip = fresh_ip()

    def refresh() -> Any:
        return api_as(None).post("/api/v1/auth/token/refresh/", {"refresh": str(token)}, REMOTE_ADDR=ip)

    with override_settings(LEVY_RATE_LIMITS=limits(token_refresh_failures="2/min")):
        start_of_a_fresh_window(60, 10)
        response = refresh()
        body = assert_error(response, 401, "not_authenticated")
        assert body["error"]["message"] == "No active account found for the given token."
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "access" not in response.content.decode()
        assert_error(refresh(), 401, "not_authenticated")
        assert_error(refresh(), 429, "rate_limited")


@pytest.mark.parametrize("token", ["garbage", "ACCESS", ""])
def test_refresh_with_a_bad_token(estate: Estate, token: str) -> None:
    if token == "ACCESS":
        token = sign_in(estate.admin.user.email, TEST_PASSWORD).json()["access"]
    response = api_as(None).post("/api/v1/auth/token/refresh/", {"refresh": token}, REMOTE_ADDR=fresh_ip())
    if token == "":
        assert_error(response, 400, "validation_error", ("refresh",))
    else:
        assert_error(response, 401, "not_authenticated")


def test_an_expired_token_says_so_in_one_sentence(estate: Estate) -> None:
    token = AccessToken.for_user(estate.admin.user)
    token.set_exp(lifetime=-datetime.timedelta(seconds=1))
    response = bearer(str(token)).get("/api/v1/me/")
    assert_error(response, 401, "not_authenticated")
    message = response.json()["error"]["message"]
    assert message == "Given token not valid for any token type: Token is expired.", message


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer ", "Token abc", "Basic Zm9vOmJhcg=="])
def test_bad_authorization_header_is_401(db: None, header: str) -> None:
    api = api_as(None)
    api.client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(api.get("/api/v1/me/"), 401, "not_authenticated")


# --- me ----------------------------------------------------------------------------------------


def test_me_lists_active_memberships_with_their_permissions(db: None) -> None:
    user = UserFactory(name="Ngozi Okafor")
    admin_of = MembershipFactory(user=user, role=Role.ADMIN, cluster=ClusterFactory(name="Palm Grove"))
    resident_of = MembershipFactory(user=user, role=Role.RESIDENT, cluster=ClusterFactory(name="Lekki Gardens"))
    left = MembershipFactory(user=user, role=Role.TREASURER)
    left.active = False
    left.deactivated_at = timezone.now()
    left.save()
    response = api_as(user).get("/api/v1/me/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["id"], body["email"], body["name"]) == (str(user.pk), user.email, "Ngozi Okafor")
    memberships = {m["cluster_id"]: m for m in body["memberships"]}
    assert set(memberships) == {str(admin_of.cluster_id), str(resident_of.cluster_id)}
    admin = memberships[str(admin_of.cluster_id)]
    assert {k: admin[k] for k in ("cluster_name", "role", "permissions")} == {
        "cluster_name": "Palm Grove",
        "role": "admin",
        "permissions": [
            "ManageBill",
            "ManageMembers",
            "ManageProviders",
            "ManageTransaction",
            "ManageWallet",
            "ViewPayments",
        ],
    }
    resident = memberships[str(resident_of.cluster_id)]
    assert {k: resident[k] for k in ("cluster_name", "role", "permissions")} == {
        "cluster_name": "Lekki Gardens",
        "role": "resident",
        "permissions": [],
    }


def test_me_for_treasurer_and_auditor(estate: Estate) -> None:
    treasurer = api_as(estate.treasurer).get("/api/v1/me/").json()["memberships"]
    assert [m["permissions"] for m in treasurer] == [
        ["ManageBill", "ManageTransaction", "ManageWallet", "ViewPayments"]
    ]
    auditor = api_as(estate.auditor).get("/api/v1/me/").json()["memberships"]
    assert [(m["role"], m["permissions"]) for m in auditor] == [("auditor", ["ViewPayments"])]


def test_me_needs_sign_in(db: None) -> None:
    response = api_as(None).get("/api/v1/me/")
    body = assert_error(response, 401, "not_authenticated")
    assert body["error"]["details"] == {}
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- clusters ----------------------------------------------------------------------------------


def test_cluster_list_shows_only_mine(estate: Estate, other_estate: Estate) -> None:
    me = estate.residents[0]
    elsewhere = MembershipFactory(user=me.user, cluster=ClusterFactory(name="Second home", currency="GHS"))
    former = MembershipFactory(user=me.user)
    former.active = False
    former.deactivated_at = timezone.now()
    former.save()
    response = api_as(me).get("/api/v1/clusters/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    rows = {row["id"]: row for row in body["results"]}
    assert set(rows) == {str(estate.cluster.pk), str(elsewhere.cluster_id)}
    assert {k: rows[str(elsewhere.cluster_id)][k] for k in ("name", "currency")} == {
        "name": "Second home",
        "currency": "GHS",
    }
    assert str(other_estate.cluster.pk) not in rows
    assert_error(api_as(None).get("/api/v1/clusters/"), 401, "not_authenticated")


def test_platform_operator_creates_an_estate(db: None) -> None:
    operator = UserFactory(is_superuser=True, is_staff=True)
    response = api_as(operator).post("/api/v1/clusters/", {"name": "  Banana Island  ", "currency": "usd"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= {"id", "name", "currency"}
    cluster = Cluster.objects.get(pk=body["id"])
    assert (body["name"], body["currency"]) == ("Banana Island", "USD")
    assert (cluster.name, cluster.currency) == ("Banana Island", "USD")
    audit = AuditEvent.objects.get(action="cluster.create")
    assert (audit.actor_id, audit.cluster_id) == (operator.pk, cluster.pk)
    default = api_as(operator).post("/api/v1/clusters/", {"name": "Default currency"})
    assert default.status_code == 201, default.json()
    assert default.json()["currency"] == "NGN"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "X", "currency": "NG"}, "currency"),
        ({"name": "X", "currency": "N1G"}, "currency"),
        ({"name": "X", "currency": "NGNX"}, "currency"),
        ({"name": "X", "currency": "€€€"}, "currency"),
        ({"name": "X", "currency": 566}, "currency"),
        ({"name": "   ", "currency": "NGN"}, "name"),
        ({"currency": "NGN"}, "name"),
        ({"name": "n" * 201}, "name"),
    ],
)
def test_estate_creation_is_validated(db: None, payload: dict[str, Any], field: str) -> None:
    operator = UserFactory(is_superuser=True)
    response = api_as(operator).post("/api/v1/clusters/", payload)
    assert_error(response, 400, "validation_error", (field,))
    assert not Cluster.objects.exists()


def test_only_the_platform_operator_creates_estates(estate: Estate) -> None:
    before = Cluster.objects.count()
    for member in (estate.admin, estate.residents[0]):
        response = api_as(member).post("/api/v1/clusters/", {"name": "Mine now", "currency": "NGN"})
        assert_error(response, 403, "permission_denied")
    assert Cluster.objects.count() == before
    assert_error(api_as(None).post("/api/v1/clusters/", {"name": "Anon"}), 401, "not_authenticated")


def test_non_operator_gets_403_whatever_the_body(estate: Estate) -> None:
    for body in ({}, {"name": ""}, {"name": "x", "currency": "NG"}):
        assert_error(api_as(estate.admin).post("/api/v1/clusters/", body), 403, "permission_denied")


# --- notifications -----------------------------------------------------------------------------


def note(user: Any, n: int, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "recipient": user,
        "event": "PAYMENT_DUE",
        "event_key": f"test:{uuid.uuid4()}",
        "priority": "normal",
        "title": f"Note {n}",
        "body": "body",
        "context": {"n": n},
    }
    values.update(fields)
    return Notification.objects.create(**values)


def test_notification_inbox_newest_first_and_unread_filter(estate: Estate) -> None:
    me = estate.residents[0]
    first = estate.wide_bill(title="Security levy")
    estate.wide_bill(title="Water levy")
    older = Notification.objects.get(recipient=me.user, context__bill_id=str(first.pk))
    Notification.objects.filter(pk=older.pk).update(read_at=timezone.now())
    api = api_as(me)
    response = api.get("/api/v1/notifications/")
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert [row["title"] for row in rows] == ["New bill: Water levy", "New bill: Security levy"]
    for row in rows:
        assert set(row) >= {
            "id",
            "event",
            "priority",
            "title",
            "body",
            "context",
            "cluster_id",
            "created_at",
            "read_at",
        }
    newest = rows[0]
    assert (newest["event"], newest["priority"], newest["cluster_id"], newest["read_at"]) == (
        "PAYMENT_DUE",
        "normal",
        str(estate.cluster.pk),
        None,
    )
    assert {k: newest["context"][k] for k in ("bill_title", "amount", "currency")} == {
        "bill_title": "Water levy",
        "amount": "15000.00",
        "currency": "NGN",
    }
    assert rows[1]["read_at"] is not None
    unread = api.get("/api/v1/notifications/", unread="true").json()["results"]
    assert [row["title"] for row in unread] == ["New bill: Water levy"]
    read = api.get("/api/v1/notifications/", unread="false").json()["results"]
    assert [row["title"] for row in read] == ["New bill: Security levy"]
    assert_error(api.get("/api/v1/notifications/", unread="perhaps"), 400, "validation_error", ("unread",))
    # Staff who are not billed got nothing.
    assert api_as(estate.auditor).get("/api/v1/notifications/").json()["results"] == []


def test_read_one_notification(estate: Estate) -> None:
    me, neighbour = estate.residents[0], estate.residents[1]
    estate.wide_bill()
    mine = Notification.objects.get(recipient=me.user)
    theirs = Notification.objects.get(recipient=neighbour.user)
    api = api_as(me)
    response = api.post(f"/api/v1/notifications/{mine.pk}/read/")
    assert response.status_code == 200, response.json()
    mine.refresh_from_db()
    assert mine.read_at is not None
    assert response.json()["id"] == str(mine.pk)
    assert datetime.datetime.fromisoformat(response.json()["read_at"]) == mine.read_at
    again = api.post(f"/api/v1/notifications/{mine.pk}/read/")
    assert again.json()["read_at"] == response.json()["read_at"]  # the first read time stays
    for target in (theirs.pk, uuid.uuid4(), "not-a-uuid"):
        assert_error(api.post(f"/api/v1/notifications/{target}/read/"), 404, "not_found")
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_read_all_notifications(estate: Estate) -> None:
    me, neighbour = estate.residents[0], estate.residents[1]
    for _ in range(3):
        estate.wide_bill()
    api = api_as(me)
    response = api.post("/api/v1/notifications/read-all/")
    assert response.status_code == 200, response.json()
    assert response.json()["marked"] == 3
    assert not Notification.objects.filter(recipient=me.user, read_at__isnull=True).exists()
    assert Notification.objects.filter(recipient=neighbour.user, read_at__isnull=True).count() == 3
    assert api.get("/api/v1/notifications/", unread="true").json()["results"] == []
    assert api.post("/api/v1/notifications/read-all/").json()["marked"] == 0
    assert_error(api_as(None).post("/api/v1/notifications/read-all/"), 401, "not_authenticated")


def test_notification_pages_are_capped_at_100_and_walk_every_row_once(db: None) -> None:
    estate = make_estate(residents=1)
    me = estate.residents[0].user
    base = timezone.now()
    Notification.objects.bulk_create(
        [
            Notification(
                recipient=me,
                event="PAYMENT_DUE",
                event_key=f"bulk:{i}",
                title=f"N{i}",
                body="b",
                context={},
                created_at=base - datetime.timedelta(seconds=i),
            )
            for i in range(105)
        ]
    )
    api = api_as(me)
    capped = api.get("/api/v1/notifications/", page_size=1000).json()
    assert len(capped["results"]) == 100
    assert capped["next"] is not None
    assert capped["previous"] is None
    assert len(api.get("/api/v1/notifications/").json()["results"]) == 50
    assert len(api.get("/api/v1/notifications/", page_size=7).json()["results"]) == 7
    rows = walk(api, "/api/v1/notifications/", page_size=20)
    assert [row["title"] for row in rows] == [f"N{i}" for i in range(105)]
    second = api.client.get(capped["next"]).json()
    assert len(second["results"]) == 5
    back = api.client.get(second["previous"]).json()
    assert [row["id"] for row in back["results"]] == [row["id"] for row in capped["results"]]


def test_pagination_is_stable_when_timestamps_tie(db: None) -> None:
    estate = make_estate(residents=1)
    me = estate.residents[0].user
    same = timezone.now()
    created = [note(me, i, created_at=same) for i in range(9)]
    rows = walk(api_as(me), "/api/v1/notifications/", page_size=2)
    assert len(rows) == 9
    assert sorted(row["id"] for row in rows) == sorted(str(n.pk) for n in created)


# --- health ------------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_without_auth(db: None) -> None:
    client = api_as(None).client
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}
