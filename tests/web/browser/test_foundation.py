"""Signing in, the dashboard and the error pages in a real browser, with a keyboard
alone where a person might use one."""

from __future__ import annotations

from decimal import Decimal

import pytest

from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge
from tests.conftest import access, make_estate, new_key
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def test_sign_in_with_the_keyboard_and_land_on_the_dashboard(page, live) -> None:
    estate = make_estate(residents=3)
    bill = estate.wide_bill(title="Service charge December", amount=Decimal("15000.00"))
    payer = estate.residents[0]
    estate.fund(payer, "20000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))

    page.goto(live("/"))
    assert page.url == live("/sign-in/?next=/")
    shoot(page, "sign-in")
    # Keyboard only: the email field has focus; type, tab, type, Enter.
    page.keyboard.type(estate.admin.user.email)
    page.keyboard.press("Tab")
    page.keyboard.type("wrong password")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("alert").inner_text().startswith("The email or password is not right")
    shoot(page, "sign-in-error")
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(live(f"/estates/{estate.cluster.pk}/dashboard/"))
    assert page.get_by_role("heading", level=1).inner_text() == estate.cluster.name
    assert page.locator(".stat", has_text="Collected").locator("dd").inner_text() == "₦15,000.00"
    assert page.locator(".stat", has_text="Billed").locator("dd").inner_text() == "₦45,000.00"
    shoot(page, "dashboard")
    # The skip link is the first thing the keyboard reaches, and it moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


NAV_OVERFLOW = """() => {
    const menu = document.querySelector('.site-nav ul');
    const links = [...menu.querySelectorAll('a')].map(a => {
        const box = a.getBoundingClientRect();
        return {label: a.textContent, left: box.left, right: box.right};
    });
    return {scroll: menu.scrollWidth, client: menu.clientWidth, page: document.documentElement.scrollWidth,
            width: window.innerWidth, links: links};
}"""


def test_the_managers_menu_fits_a_phone_without_scrolling_sideways(page, live) -> None:
    estate = make_estate(residents=1)
    sign_in(page, live, estate.admin.user)  # the estate admin's menu is the longest: it has Settings
    page.goto(live(f"/estates/{estate.cluster.pk}/bills/"))
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 844})
        menu = page.evaluate(NAV_OVERFLOW)
        labels = [link["label"] for link in menu["links"]]
        assert labels[0] == "Dashboard" and labels[-1] == "Settings", labels
        assert menu["scroll"] <= menu["client"], (width, menu)
        assert menu["page"] <= menu["width"], (width, menu)
        # every link, Settings included, is on screen without scrolling
        assert all(link["left"] >= 0 and link["right"] <= width for link in menu["links"]), (width, menu)
    page.get_by_role("navigation", name="Estate").get_by_role("link", name="Settings").click()
    page.wait_for_url(live(f"/estates/{estate.cluster.pk}/settings/payments/"))


def test_another_estates_page_is_the_404_page(page, live) -> None:
    mine, theirs = make_estate(residents=1), make_estate(residents=1)
    sign_in(page, live, mine.admin.user)
    response = page.goto(live(f"/estates/{theirs.cluster.pk}/dashboard/"))
    assert response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "We can't find that page"
    shoot(page, "not-found")


def test_a_resident_lands_on_their_page_and_signs_out(page, live) -> None:
    estate = make_estate(residents=1)
    estate.wide_bill(title="Security levy")
    sign_in(page, live, estate.residents[0].user)
    assert page.get_by_role("heading", level=1).is_visible()
    shoot(page, "resident-landing")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live("/sign-in/"))
