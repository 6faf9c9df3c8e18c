"""The payment provider page in a real browser, with the keyboard alone: set up Paystack
from the admin's Settings link, then switch to Flutterwave — first without its secret
hash (the error is next to the field), then with it."""

from __future__ import annotations

import pytest

from levy.payments import secrets
from levy.payments.models import ProviderAccount
from tests.conftest import make_estate
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser

SECRET = "sk_test_4f1d9c7b2e8a6d5c3b1a9f0e7d6c1706"
FLW_SECRET = "FLWSECK_TEST-0a1b2c3d4e5f60718293-X"


def test_set_up_paystack_then_switch_to_flutterwave_with_the_keyboard(page, live) -> None:
    estate = make_estate(residents=1)
    sign_in(page, live, estate.admin.user)
    page.get_by_role("link", name="Settings").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Set up a provider").wait_for()
    shoot(page, "payment-settings-empty")

    page.get_by_role("radio", name="Paystack").focus()  # chosen already: Tab enters the group on it
    assert page.get_by_role("radio", name="Paystack").is_checked()
    page.keyboard.press("Tab")
    page.keyboard.type("pk_test_palmgrove")
    page.keyboard.press("Tab")
    page.keyboard.type(SECRET)
    page.keyboard.press("Tab")  # the secret hash: Flutterwave only
    page.keyboard.press("Tab")  # "Residents top up through this provider", ticked
    assert (
        page.evaluate("document.activeElement.name") == "active"
        and page.get_by_label("Residents top up through this provider").is_checked()
    )
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.get_by_role("status").wait_for()
    assert page.get_by_role("status").inner_text() == "Paystack settings saved. Residents top up through Paystack."
    account = ProviderAccount.objects.get(cluster=estate.cluster)
    assert (account.provider, account.active, account.public_key) == ("paystack", True, "pk_test_palmgrove")
    assert secrets.unseal(account.secret_key_sealed) == SECRET
    assert SECRET not in page.content()
    assert page.get_by_label("Secret key").input_value() == ""
    shoot(page, "payment-settings")

    # Flutterwave: one arrow key away in the provider group; its secret hash forgotten first.
    page.get_by_role("radio", name="Paystack").focus()
    page.keyboard.press("ArrowDown")
    assert page.get_by_role("radio", name="Flutterwave").is_checked()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type(FLW_SECRET)
    page.keyboard.press("Enter")  # Enter in a field sends the form
    page.locator("#id_webhook_secret_error").wait_for()
    assert page.locator("#id_webhook_secret_error").inner_text() == (
        "Enter Flutterwave's secret hash: Levy needs it to check that webhooks come from Flutterwave."
    )
    assert (
        page.get_by_role("radio", name="Flutterwave").is_checked()
        and page.get_by_label("Secret key").input_value() == ""
    )
    assert FLW_SECRET not in page.content()
    assert page.get_by_text("so type the secret key again").is_visible()
    shoot(page, "payment-settings-error")

    page.get_by_label("Secret key").focus()
    page.keyboard.type(FLW_SECRET)
    page.keyboard.press("Tab")
    page.keyboard.type("palmgrove-hash-2026")
    page.keyboard.press("Enter")
    page.get_by_role("status").wait_for()
    assert "Residents top up through Flutterwave." in page.get_by_role("status").inner_text()
    flw = ProviderAccount.objects.get(cluster=estate.cluster, provider="flutterwave")
    account.refresh_from_db()
    assert (flw.active, account.active) == (True, False)
    assert secrets.unseal(flw.webhook_secret_sealed) == "palmgrove-hash-2026"
    assert page.locator("h3", has_text="Paystack").locator(".badge").inner_text() == "Not in use"
    shoot(page, "payment-settings-two")


def test_a_treasurer_has_no_settings_link_and_is_refused(page, live) -> None:
    estate = make_estate(residents=1)
    sign_in(page, live, estate.treasurer.user)
    assert page.get_by_role("link", name="Settings").count() == 0
    assert page.goto(live(f"/estates/{estate.cluster.pk}/settings/payments/")).status == 403
