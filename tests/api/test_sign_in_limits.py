"""Sign-in limits (levy/accounts/signin_guard.py, decision 0017), over HTTP: a lockout per
account that the right password does not bypass and that ends by time or by an admin;
failures per address at a level a shared gateway never reaches; token refresh limited
on its own; and limits that still hold with Redis down."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from levy.accounts import signin_guard
from levy.accounts.models import SignInState
from levy.audit.models import AuditEvent
from tests.api.conftest import api_as, assert_error, base
from tests.api.test_rate_limits import UNREACHABLE_CACHES, limits, start_of_a_fresh_window
from tests.conftest import Estate
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
GATEWAY = "10.20.30.40"


@pytest.fixture(autouse=True)
def _fresh_local_counters() -> Iterator[None]:
    signin_guard.local_counters.clear()
    yield
    signin_guard.local_counters.clear()


def sign_in(email: str, password: str, ip: str = GATEWAY) -> Any:
    return api_as(None).post(TOKEN, {"email": email, "password": password}, REMOTE_ADDR=ip)


def refresh(token: str, ip: str = GATEWAY) -> Any:
    return api_as(None).post(REFRESH, {"refresh": token}, REMOTE_ADDR=ip)


def assert_locked(response: Any) -> int:
    body = assert_error(response, 429, "account_locked")
    retry_after = int(response["Retry-After"])
    assert body["error"]["details"] == {"retry_after": retry_after}
    assert "access" not in response.content.decode()
    return retry_after


# --- per account ---------------------------------------------------------------------------------


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=3, LEVY_SIGN_IN_LOCKOUT_MINUTES=15)
def test_wrong_passwords_lock_the_account_and_the_right_password_does_not_open_it(estate: Estate) -> None:
    victim = estate.residents[0].user
    neighbour = estate.residents[1].user
    start_of_a_fresh_window(60, 15)
    assert_error(sign_in(victim.email, "guess-1"), 401, "not_authenticated")
    assert_error(sign_in(victim.email, "guess-2", ip="10.0.0.2"), 401, "not_authenticated")
    # The third wrong password, from yet another address, locks the account.
    assert 890 <= assert_locked(sign_in(victim.email, "guess-3", ip="10.0.0.3")) <= 900
    assert_locked(sign_in(victim.email, TEST_PASSWORD))
    assert_locked(sign_in(victim.email.upper(), TEST_PASSWORD, ip="10.0.0.9"))
    state = SignInState.objects.get(user=victim)
    assert (state.failures, state.lock_count) == (3, 1)  # attempts while locked change nothing
    assert 14 * 60 < (state.locked_until - timezone.now()).total_seconds() <= 15 * 60
    lock = AuditEvent.objects.get(action="account.lock")
    assert (lock.target_id, lock.data, lock.ip_address) == (str(victim.pk), {"failures": 3}, "10.0.0.3")
    # Other people behind the same address are not affected.
    assert sign_in(neighbour.email, TEST_PASSWORD).status_code == 200
    assert not SignInState.objects.filter(user=neighbour).exists()


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=2)
def test_the_lock_ends_with_time_and_a_right_password_then_clears_the_count(estate: Estate) -> None:
    user = estate.residents[0].user
    sign_in(user.email, "wrong")
    assert_locked(sign_in(user.email, "wrong"))
    SignInState.objects.filter(user=user).update(locked_until=timezone.now() - datetime.timedelta(seconds=1))
    assert sign_in(user.email, TEST_PASSWORD).status_code == 200
    state = SignInState.objects.get(user=user)
    assert (state.failures, state.lock_count) == (2, 1)  # the expired lock is history
    # After the lock, counting starts again from one.
    assert_error(sign_in(user.email, "wrong"), 401, "not_authenticated")
    assert SignInState.objects.get(user=user).failures == 1
    assert sign_in(user.email, TEST_PASSWORD).status_code == 200
    assert SignInState.objects.get(user=user).failures == 0


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=3)
def test_a_right_password_clears_earlier_failures(estate: Estate) -> None:
    user = estate.residents[0].user
    sign_in(user.email, "wrong")
    sign_in(user.email, "wrong")
    assert sign_in(user.email, TEST_PASSWORD).status_code == 200
    sign_in(user.email, "wrong")
    sign_in(user.email, "wrong")
    assert sign_in(user.email, TEST_PASSWORD).status_code == 200
    assert SignInState.objects.get(user=user).failures == 0


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=2)
def test_failures_far_apart_do_not_add_up(estate: Estate) -> None:
    user = estate.residents[0].user
    sign_in(user.email, "wrong")
    SignInState.objects.filter(user=user).update(last_failure_at=timezone.now() - datetime.timedelta(minutes=61))
    assert_error(sign_in(user.email, "wrong"), 401, "not_authenticated")
    assert SignInState.objects.get(user=user).failures == 1


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=2)
def test_an_unknown_email_answers_like_a_known_one(estate: Estate) -> None:
    known = estate.residents[0].user.email
    for email in (known, "nobody@example.test"):
        assert_error(sign_in(email, "wrong"), 401, "not_authenticated")
        assert_locked(sign_in(email, "wrong"))
        assert_locked(sign_in(email, "wrong"))
    assert SignInState.objects.count() == 1


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=2)
def test_an_estate_admin_unlocks_a_member(estate: Estate, other_estate: Estate) -> None:
    member = estate.residents[0]
    sign_in(member.user.email, "wrong")
    assert_locked(sign_in(member.user.email, "wrong"))
    path = f"{base(estate)}/management/members/{member.user_id}/unlock-sign-in/"
    # Refused for anyone without ManageMembers in this estate, and nothing changes.
    assert_error(api_as(None).post(path), 401, "not_authenticated")
    for caller in (estate.residents[1], estate.treasurer, estate.auditor):
        assert_error(api_as(caller).post(path), 403, "permission_denied")
    assert_error(api_as(other_estate.admin).post(path), 404, "not_found")
    other_path = f"{base(other_estate)}/management/members/{member.user_id}/unlock-sign-in/"
    assert_error(api_as(other_estate.admin).post(other_path), 404, "not_found")
    assert_locked(sign_in(member.user.email, TEST_PASSWORD))
    assert not AuditEvent.objects.filter(action="account.unlock").exists()

    unlocked = api_as(estate.admin).post(path)
    assert unlocked.status_code == 200, unlocked.content
    assert unlocked.json() == {"user_id": str(member.user_id), "unlocked": True}
    event = AuditEvent.objects.get(action="account.unlock")
    assert (event.actor_id, event.cluster_id, event.target_id) == (
        estate.admin.user_id,
        estate.cluster.pk,
        str(member.user_id),
    )
    assert event.data == {"failures": 2, "was_locked": True}
    assert sign_in(member.user.email, TEST_PASSWORD).status_code == 200
    # Nothing left to unlock.
    assert api_as(estate.admin).post(path).json() == {"user_id": str(member.user_id), "unlocked": False}
    assert AuditEvent.objects.filter(action="account.unlock").count() == 1


# --- per address ---------------------------------------------------------------------------------


def test_a_gateways_honest_traffic_is_never_refused(estate: Estate) -> None:
    """The reported case: behind one address, nine sign-ins then eight refreshes got 429.
    With the default limits, a gateway's sign-ins, refreshes and occasional mistakes pass."""
    people = [m.user for m in (*estate.residents, estate.admin, estate.treasurer, estate.auditor)]
    start_of_a_fresh_window(60, 30)
    tokens = []
    for i in range(12):
        response = sign_in(people[i % len(people)].email, TEST_PASSWORD)
        assert response.status_code == 200, (i, response.content)
        tokens.append(response.json()["refresh"])
    for i in range(5):
        assert_error(sign_in(people[i].email, "typo"), 401, "not_authenticated")
    for i, token in enumerate(tokens):
        assert refresh(token).status_code == 200, i
    assert sign_in(people[0].email, TEST_PASSWORD).status_code == 200


def test_failures_per_address_stop_a_spray_across_accounts(estate: Estate) -> None:
    people = [m.user for m in estate.residents]
    with override_settings(LEVY_RATE_LIMITS=limits(sign_in_failures="3/min")):
        start_of_a_fresh_window(60, 15)
        for person in people:
            assert_error(sign_in(person.email, "Password1"), 401, "not_authenticated")
        refused = sign_in(estate.admin.user.email, TEST_PASSWORD)
        body = assert_error(refused, 429, "rate_limited")
        assert 1 <= body["error"]["details"]["retry_after"] <= 60
        assert refused["Retry-After"] == str(body["error"]["details"]["retry_after"])
        # No account was locked by the spray; another address signs in.
        assert SignInState.objects.filter(locked_until__isnull=False).count() == 0
        assert sign_in(estate.admin.user.email, TEST_PASSWORD, ip="10.9.9.9").status_code == 200


def test_refresh_has_limits_of_its_own(estate: Estate) -> None:
    user = estate.residents[0].user
    with override_settings(LEVY_RATE_LIMITS=limits(token_refresh="3/min", token_refresh_failures="2/min")):
        start_of_a_fresh_window(60, 15)
        token = sign_in(user.email, TEST_PASSWORD).json()["refresh"]
        assert [refresh(token).status_code for _ in range(3)] == [200, 200, 200]
        assert_error(refresh(token, ip="10.1.1.1"), 429, "rate_limited")  # per person, whatever the address
        # Sign-in is not affected by refreshes.
        assert sign_in(user.email, TEST_PASSWORD).status_code == 200
        # Bad refresh tokens are counted per address.
        assert_error(refresh("garbage", ip="10.2.2.2"), 401, "not_authenticated")
        assert_error(refresh("garbage", ip="10.2.2.2"), 401, "not_authenticated")
        assert_error(refresh("garbage", ip="10.2.2.2"), 429, "rate_limited")
        assert refresh(sign_in(estate.admin.user.email, TEST_PASSWORD).json()["refresh"]).status_code == 200


# --- Redis down ----------------------------------------------------------------------------------


def test_with_redis_down_failures_are_still_limited_in_the_process(estate: Estate) -> None:
    people = [m.user for m in estate.residents]
    with override_settings(CACHES=UNREACHABLE_CACHES, LEVY_RATE_LIMITS=limits(sign_in_failures="2/min")):
        started = time.monotonic()
        start_of_a_fresh_window(60, 20)
        for person in people[:2]:
            assert_error(sign_in(person.email, "wrong"), 401, "not_authenticated")
        assert_error(sign_in(people[2].email, TEST_PASSWORD), 429, "rate_limited")
        assert sign_in(people[2].email, TEST_PASSWORD, ip="10.7.7.7").status_code == 200
        with override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=2):
            assert_error(sign_in("ghost@example.test", "x", ip="10.7.7.8"), 401, "not_authenticated")
            assert_locked(sign_in("ghost@example.test", "x", ip="10.7.7.9"))
        assert time.monotonic() - started < 60
