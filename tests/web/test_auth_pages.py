"""Signing in and out, the sign-in guard, password reset and invitations, over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import override_settings

from levy.accounts.models import User
from levy.accounts.signin_guard import account_unlock
from levy.members.services import member_add
from tests.conftest import Estate, access, committed
from tests.factories import TEST_PASSWORD
from tests.web.conftest import Browser, browser_as, estate_url

pytestmark = pytest.mark.django_db


def sign_in(browser: Browser, email: str, password: str = TEST_PASSWORD, **extra: str) -> object:
    return browser.post("/sign-in/", {"username": email, "password": password, "remember": "on"}, **extra)


def test_the_sign_in_page_renders_with_a_csrf_token() -> None:
    response = Browser().get("/sign-in/")
    assert response.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b"Forgot your password?" in response.content


def test_a_manager_signs_in_and_lands_on_the_dashboard(estate: Estate) -> None:
    browser = Browser()
    response = sign_in(browser, estate.admin.user.email.upper())
    assert response.status_code == 302
    assert response["Location"] == "/"
    home = browser.get("/")
    assert home["Location"] == estate_url(estate)
    assert browser.get(estate_url(estate))["Location"] == estate_url(estate, "dashboard/")
    assert browser.get(estate_url(estate, "dashboard/")).status_code == 200


def test_a_post_without_the_csrf_token_is_refused(estate: Estate) -> None:
    browser = Browser()
    response = browser.post("/sign-in/", {"username": estate.admin.user.email, "password": TEST_PASSWORD}, csrf=False)
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.client.session


def test_a_wrong_password_says_so_and_signs_nobody_in(estate: Estate) -> None:
    browser = Browser()
    response = sign_in(browser, estate.admin.user.email, "wrong-password")
    assert response.status_code == 200
    assert b"The email or password is not right" in response.content
    assert "_auth_user_id" not in browser.client.session


@override_settings(LEVY_SIGN_IN_LOCKOUT_FAILURES=3)
def test_an_account_locks_after_repeated_failures_and_the_right_password_does_not_open_it(estate: Estate) -> None:
    email = estate.admin.user.email
    for address in ("10.0.0.1", "10.0.0.2"):
        assert b"not right" in sign_in(Browser(), email, "nope", REMOTE_ADDR=address).content
    locked = sign_in(Browser(), email, "nope", REMOTE_ADDR="10.0.0.3")
    assert b"it is locked for 15 more minutes" in locked.content
    browser = Browser()
    response = sign_in(browser, email, TEST_PASSWORD, REMOTE_ADDR="10.0.0.4")
    assert response.status_code == 200
    assert b"locked" in response.content
    assert "_auth_user_id" not in browser.client.session
    # Another account behind the same addresses is not affected.
    assert sign_in(Browser(), estate.treasurer.user.email, REMOTE_ADDR="10.0.0.3").status_code == 302
    assert account_unlock(user=estate.admin.user, actor=None)
    assert sign_in(Browser(), email).status_code == 302


def test_one_address_is_limited_whatever_accounts_it_tries(estate: Estate, settings: Any) -> None:
    settings.LEVY_RATE_LIMITS = {**settings.LEVY_RATE_LIMITS, "sign_in_failures": "4/min"}
    for n in range(4):
        failed = sign_in(Browser(), f"guess{n}@example.test", "nope", REMOTE_ADDR="10.9.9.9")
        assert b"The email or password is not right" in failed.content
    limited = sign_in(Browser(), "guess9@example.test", "nope", REMOTE_ADDR="10.9.9.9")
    assert b"Too many failed sign-ins from your network" in limited.content
    refused = sign_in(Browser(), estate.admin.user.email, REMOTE_ADDR="10.9.9.9")
    assert refused.status_code == 200
    assert sign_in(Browser(), estate.admin.user.email, REMOTE_ADDR="10.9.9.10").status_code == 302


def test_sign_out_is_a_post_and_ends_the_session(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    assert browser.get("/sign-out/").status_code == 405
    response = browser.post("/sign-out/")
    assert response.status_code == 302
    assert response["Location"] == "/sign-in/"
    assert browser.get(estate_url(estate, "dashboard/"))["Location"].startswith("/sign-in/?next=")


def _link(body: str) -> str:
    match = re.search(r"https?://\S+/password/set/\S+/", body)
    assert match, body
    return match.group(0)


@override_settings(LEVY_PUBLIC_URL="https://levy.example.com/")
def test_forgot_password_emails_a_single_use_link_on_the_public_address(estate: Estate) -> None:
    user = estate.residents[0].user
    response = Browser().post("/password/forgot/", {"email": user.email.upper()}, HTTP_HOST="127.0.0.1")
    assert response["Location"] == "/password/sent/"
    assert len(mail.outbox) == 1
    link = _link(mail.outbox[0].body)
    assert link.startswith("https://levy.example.com/password/set/")
    path = link.removeprefix("https://levy.example.com")
    browser = Browser()
    form = browser.get(path)
    assert form.status_code == 302  # Django moves the token out of the address bar
    page = browser.get(form["Location"])
    assert b"Choose your password" in page.content
    done = browser.post(form["Location"], {"new_password1": "a-new-long-secret", "new_password2": "a-new-long-secret"})
    assert done["Location"] == "/"
    user.refresh_from_db()
    assert user.check_password("a-new-long-secret")
    again = Browser().get(path)
    assert again.status_code == 200
    assert b"This link no longer works" in again.content


def test_forgot_password_for_an_unknown_address_sends_nothing_and_says_the_same() -> None:
    response = Browser().post("/password/forgot/", {"email": "nobody@example.test"})
    assert response["Location"] == "/password/sent/"
    assert mail.outbox == []


@override_settings(LEVY_PUBLIC_URL="https://estate.example.org/levy/")
def test_a_member_added_without_a_password_is_invited_once_the_membership_commits(estate: Estate) -> None:
    with committed():
        membership = member_add(access=access(estate.admin), email="New.Person@example.test", name="New Person")
    invitations = [m for m in mail.outbox if m.subject.startswith("You have been added to")]
    assert len(invitations) == 1
    message = invitations[0]
    assert message.to == ["new.person@example.test"]
    assert message.subject == f"You have been added to {estate.cluster.name} on Levy"
    assert estate.admin.user.name in message.body
    link = _link(message.body)
    assert link.startswith("https://estate.example.org/levy/password/set/")
    browser = Browser()
    form = browser.get(link.removeprefix("https://estate.example.org/levy"))
    done = browser.post(form["Location"], {"new_password1": "my-own-secret-1", "new_password2": "my-own-secret-1"})
    assert done["Location"] == "/"
    assert browser.get("/")["Location"] == f"/estates/{estate.cluster.pk}/"
    user = User.objects.get(pk=membership.user_id)
    assert user.check_password("my-own-secret-1")
    reused = Browser().get(link.removeprefix("https://estate.example.org/levy"))
    assert reused.status_code == 200
    assert b"This link no longer works" in reused.content


def test_someone_who_can_already_sign_in_gets_no_invitation(estate: Estate, other_estate: Estate) -> None:
    with committed():
        member_add(access=access(estate.admin), email="with.password@example.test", password="chosen-already")
        member_add(access=access(estate.admin), email=other_estate.residents[0].user.email)
    assert [m.subject for m in mail.outbox if m.subject.startswith("You have been added to")] == []


def test_a_failed_membership_sends_no_invitation(estate: Estate) -> None:
    from levy.common.errors import ValidationError

    with committed(), pytest.raises(ValidationError):
        member_add(access=access(estate.admin), email=estate.residents[0].user.email)
    assert mail.outbox == []


def test_forgot_password_is_limited_per_email_address(estate: Estate, settings: Any) -> None:
    settings.LEVY_RATE_LIMITS = {**settings.LEVY_RATE_LIMITS, "password_reset_email": "2/hour"}
    email = estate.residents[0].user.email
    for address in ("10.1.0.1", "10.1.0.2"):
        assert Browser().post("/password/forgot/", {"email": email}, REMOTE_ADDR=address).status_code == 302
    refused = Browser().post("/password/forgot/", {"email": email.upper()}, REMOTE_ADDR="10.1.0.3")
    assert refused.status_code == 200
    assert b"Too many requests for a new password link" in refused.content
    assert len(mail.outbox) == 2
    other = Browser().post("/password/forgot/", {"email": estate.residents[1].user.email}, REMOTE_ADDR="10.1.0.3")
    assert other.status_code == 302
