"""The estate admin's payment provider page over HTTP: what it shows (hints only), the
form that sets an account through the API's service (sealed, audited), blank secrets
that keep the saved ones, errors next to their fields, who may open it, and the queries
it costs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from levy.audit.models import AuditEvent
from levy.estates.permissions import Role
from levy.payments import secrets
from levy.payments.accounts import provider_account_save, webhook_url
from levy.payments.models import ProviderAccount
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, committed
from tests.factories import MembershipFactory, UserFactory
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db

PAGE = "settings/payments/"
SECRET = "sk_test_4f1d9c7b2e8a6d5c3b1a9f0e7d6c1706"


def _form(**overrides: str) -> dict[str, str]:
    return {
        "provider": "paystack",
        "public_key": "",
        "secret_key": "",
        "webhook_secret": "",
        "active": "on",
        "idempotency_key": f"test-provider-{uuid.uuid4()}",
        **overrides,
    }


def _account(estate: Estate, provider: str = "paystack", **values: Any) -> ProviderAccount:
    values.setdefault("secret_key", SECRET)
    values.setdefault("active", True)
    with committed():
        return provider_account_save(access=access(estate.admin), provider=provider, **values)


def test_an_admin_sets_up_paystack_the_secret_is_sealed_audited_and_never_shown(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    url = estate_url(estate, PAGE)
    empty = browser.get(url).content.decode()
    assert "No provider is set up yet." in empty and "Set up a provider" in empty
    assert "No provider is in use: residents cannot top up by card." in empty

    response = browser.post(url, _form(public_key="pk_test_palm", secret_key=SECRET))
    assert response.status_code == 302 and response["Location"] == url
    account = ProviderAccount.objects.get(cluster=estate.cluster)
    assert (account.provider, account.active, account.public_key) == ("paystack", True, "pk_test_palm")
    assert SECRET not in account.secret_key_sealed and secrets.unseal(account.secret_key_sealed) == SECRET
    assert (account.secret_key_hint, account.updated_by_id) == ("sk_test_…1706", estate.admin.user_id)
    event = AuditEvent.objects.get(cluster=estate.cluster, action="payments.provider_account.create")
    assert event.actor_id == estate.admin.user_id and event.target_id == str(account.pk)
    assert event.data["changed"] == ["secret_key", "public_key", "active"]
    assert event.data["secret_key_hint"] == "sk_test_…1706" and SECRET not in str(event.data)

    page = browser.get(url).content.decode()
    assert "Paystack settings saved. Residents top up through Paystack." in page
    assert "Residents top up through <strong>Paystack</strong>." in page
    assert "sk_test_…1706" in page and "pk_test_palm" in page and 'class="badge badge-active">In use<' in page
    assert f"by {estate.admin.user.get_full_name()}" in page
    assert webhook_url(account) in page
    assert SECRET not in page and SECRET[8:-4] not in page


def test_a_blank_secret_keeps_the_saved_one(estate: Estate) -> None:
    account = _account(estate, public_key="pk_test_old")
    sealed = account.secret_key_sealed
    browser = browser_as(estate.admin)
    page = browser.get(estate_url(estate, PAGE)).content.decode()
    assert "leave blank to keep the saved one (Paystack: sk_test_…1706)" in page
    assert 'name="secret_key"' in page and SECRET not in page

    response = browser.post(estate_url(estate, PAGE), _form(public_key="pk_test_new"))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.secret_key_sealed == sealed and secrets.unseal(account.secret_key_sealed) == SECRET
    assert (account.public_key, account.active) == ("pk_test_new", True)
    event = AuditEvent.objects.get(cluster=estate.cluster, action="payments.provider_account.update")
    assert event.data["changed"] == ["public_key"]
    # A blank public key keeps the saved one too.
    assert browser.post(estate_url(estate, PAGE), _form()).status_code == 302
    account.refresh_from_db()
    assert (account.public_key, account.secret_key_sealed) == ("pk_test_new", sealed)
    assert AuditEvent.objects.filter(action="payments.provider_account.update").count() == 1


def test_switching_to_flutterwave_needs_its_secret_hash_and_stops_paystack(estate: Estate) -> None:
    paystack = _account(estate)
    browser = browser_as(estate.admin)
    url = estate_url(estate, PAGE)
    flw_secret = "FLWSECK_TEST-0a1b2c3d4e5f60718293-X"
    refused = browser.post(url, _form(provider="flutterwave", secret_key=flw_secret))
    html = refused.content.decode()
    assert refused.status_code == 400
    assert (
        '<p class="field-error" id="id_webhook_secret_error">Enter Flutterwave\'s secret hash: Levy needs it '
        "to check that webhooks come from Flutterwave.</p>" in html.replace("&#x27;", "'")
    )
    assert flw_secret not in html  # what was typed into a secret field is not drawn back, and it says so
    assert "Nothing was saved. Secrets are never shown back, so type the secret key again." in html
    assert 'value="flutterwave" checked' in html
    assert not ProviderAccount.objects.filter(provider="flutterwave").exists()

    response = browser.post(url, _form(provider="flutterwave", secret_key=flw_secret, webhook_secret="hash-2026-x"))
    assert response.status_code == 302
    flw = ProviderAccount.objects.get(cluster=estate.cluster, provider="flutterwave")
    paystack.refresh_from_db()
    assert (flw.active, paystack.active) == (True, False)
    assert secrets.unseal(flw.webhook_secret_sealed) == "hash-2026-x"
    page = browser.get(url).content.decode()
    assert "Residents top up through <strong>Flutterwave</strong>." in page
    assert 'class="badge badge-ended">Not in use<' in page
    assert flw.webhook_secret_hint in page and "hash-2026-x" not in page and flw_secret not in page


def test_unticking_stops_top_ups_by_card(estate: Estate) -> None:
    account = _account(estate)
    browser = browser_as(estate.admin)
    form = _form()
    del form["active"]  # an unticked checkbox is not sent
    assert browser.post(estate_url(estate, PAGE), form).status_code == 302
    account.refresh_from_db()
    assert account.active is False
    page = browser.get(estate_url(estate, PAGE)).content.decode()
    assert "Paystack settings saved. Paystack is not in use: residents cannot top up by card through it." in page
    assert "No provider is in use: residents cannot top up by card." in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"provider": ""}, "provider", "Choose Paystack or Flutterwave."),
        ({"provider": "stripe", "secret_key": SECRET}, "provider", "Choose Paystack or Flutterwave."),
        (
            {"secret_key": ""},
            "secret_key",
            "Enter the secret key: Paystack is not set up for this estate yet, so there is no saved one to keep.",
        ),
        ({"secret_key": "sk_test_with space"}, "secret_key", "Use at most 200 characters, without spaces."),
        ({"public_key": "pk test"}, "public_key", "Use at most 200 characters, without spaces."),
    ],
)
def test_bad_input_is_explained_next_to_its_field_and_nothing_changes(
    estate: Estate, form: dict[str, str], field: str, message: str
) -> None:
    before = db_snapshot()
    response = browser_as(estate.admin).post(estate_url(estate, PAGE), _form(**form))
    html = response.content.decode()
    assert response.status_code == 400
    assert f'<p class="field-error" id="id_{field}_error">{message}</p>' in html
    assert SECRET not in html and "with space" not in html
    assert db_snapshot() == before
    assert not AuditEvent.objects.filter(action__startswith="payments.provider_account").exists()


def test_a_form_sent_twice_saves_and_audits_once(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    url = estate_url(estate, PAGE)
    key = browser.get(url).content.decode().split('name="idempotency_key" value="', 1)[1].split('"', 1)[0]
    assert key.startswith("web-provider-")
    first = browser.post(url, _form(secret_key=SECRET, idempotency_key=key))
    again = browser.post(url, _form(secret_key=SECRET, idempotency_key=key))  # a double click
    assert first.status_code == again.status_code == 302
    assert AuditEvent.objects.filter(action__startswith="payments.provider_account").count() == 1
    other = browser.post(url, _form(secret_key=SECRET + "9", idempotency_key=key))
    assert other.status_code == 400 and "This form was already sent with other details." in other.content.decode()
    assert secrets.unseal(ProviderAccount.objects.get(cluster=estate.cluster).secret_key_sealed) == SECRET


@pytest.mark.parametrize("role", ["treasurer", "auditor", "resident", "operator"])
def test_only_the_estate_admin_opens_or_saves_it(estate: Estate, role: str) -> None:
    _account(estate)
    who = {
        "treasurer": estate.treasurer,
        "auditor": estate.auditor,
        "resident": estate.residents[0],
        "operator": UserFactory(is_staff=True, is_superuser=True),
    }[role]
    browser = browser_as(who)
    before = db_snapshot()
    assert browser.get(estate_url(estate, PAGE)).status_code == 403
    assert browser.post(estate_url(estate, PAGE), _form(secret_key="sk_test_takeover")).status_code == 403
    assert db_snapshot() == before
    if role != "operator":
        dashboard = browser.get(estate_url(estate, "dashboard/" if role != "resident" else "my-bills/"))
        assert PAGE not in dashboard.content.decode()  # and no Settings link to it


def test_the_admins_menu_links_to_it(estate: Estate) -> None:
    html = browser_as(estate.admin).get(estate_url(estate, "dashboard/")).content.decode()
    assert f'<a href="{estate_url(estate, PAGE)}">Settings</a>' in html
    page = browser_as(estate.admin).get(estate_url(estate, PAGE)).content.decode()
    assert f'<a href="{estate_url(estate, PAGE)}" aria-current="page">Settings</a>' in page


def test_the_page_costs_the_same_queries_with_one_account_or_two(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    url = estate_url(estate, PAGE)
    browser.get(url)  # warm the session and caches
    _account(estate)
    one, response = count_queries(lambda: browser.get(url))
    assert response.status_code == 200 and response.content.decode().count("Last changed") == 1
    # The second account changed by someone else: their name is read in the same statement.
    other_admin = MembershipFactory(cluster=estate.cluster, role=Role.ADMIN)
    with committed():
        provider_account_save(
            access=access(other_admin), provider="flutterwave", secret_key="FLWSECK-x1", webhook_secret="hash-1"
        )
    two, response = count_queries(lambda: browser.get(url))
    assert response.status_code == 200 and response.content.decode().count("Last changed") == 2
    assert one == two, (one, two)
