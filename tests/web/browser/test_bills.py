"""The bill pages in a real browser: issue a bill for the estate and for one resident
found by typing, read its counts, cancel it; an auditor finds no control that writes;
another estate's bill is the 404 page."""

from __future__ import annotations

import datetime
import re

import pytest

from levy.billing.models import Bill
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge
from tests.conftest import access, make_estate
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def _fill_bill(page, title: str, amount: str) -> None:
    page.get_by_label("Title").fill(title)
    page.get_by_label("Category").select_option("security")
    page.get_by_label("Amount").fill(amount)
    due = (estate_today() + datetime.timedelta(days=10)).isoformat()
    page.get_by_label("Due date", exact=True).fill(due)


def test_issue_an_estate_wide_bill_and_see_it_with_its_counts(page, live) -> None:
    estate = make_estate(residents=3)
    earlier = estate.wide_bill(title="Service charge November")
    bill_acknowledge(access=access(estate.residents[0]), bill=earlier)
    sign_in(page, live, estate.admin.user)
    page.get_by_role("link", name="Bills").click()
    shoot(page, "bills")
    page.get_by_role("link", name="New bill").click()
    _fill_bill(page, "Security levy December", "5000")
    shoot(page, "bill-new")
    page.get_by_role("button", name="Issue the bill").click()
    page.wait_for_load_state("networkidle")
    bill = Bill.objects.get(cluster=estate.cluster, title="Security levy December")
    assert bill.user_id is None and str(bill.amount) == "5000.00" and bill.category == "security"
    assert page.url == live(f"/estates/{estate.cluster.pk}/bills/{bill.pk}/")
    assert page.get_by_role("status").inner_text().startswith(f"Bill {bill.reference} issued.")
    assert page.locator(".badge-pending").count() == 3
    shoot(page, "bill")
    page.get_by_role("link", name="Bills").first.click()
    row = page.locator("tr", has_text="Security levy December")
    assert "0 of 3 paid" in row.inner_text()
    assert page.locator("tr", has_text="Service charge November").locator("svg").get_attribute("aria-label") == (
        "1 acknowledged, 2 pending"
    )


def test_issue_a_bill_for_one_resident_found_by_typing_part_of_their_name(page, live) -> None:
    estate = make_estate(residents=4)
    resident = estate.residents[2]
    sign_in(page, live, estate.treasurer.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/bills/new/"))
    _fill_bill(page, "Gate remote replacement", "2500.00")
    page.get_by_label("One resident").check()
    # Keyboard: type part of the name; the matches arrive without a reload.
    page.get_by_label("Find the resident by name or email").press_sequentially(resident.user.name[-3:], delay=30)
    match = page.get_by_label(resident.user.name, exact=False)
    match.wait_for()
    match.check()
    shoot(page, "bill-new-one-resident")
    page.keyboard.press("Tab")
    page.get_by_role("button", name="Issue the bill").press("Enter")
    page.wait_for_url(re.compile(r"/bills/[0-9a-f-]{36}/$"))
    bill = Bill.objects.get(cluster=estate.cluster, title="Gate remote replacement")
    assert bill.user_id == resident.user_id
    assert page.get_by_text("One resident", exact=True).is_visible()
    assert page.locator(".badge-pending").count() == 1


def test_cancel_a_bill_with_a_reason(page, live) -> None:
    estate = make_estate(residents=2)
    bill = estate.wide_bill(title="Duplicate levy")
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/bills/{bill.pk}/"))
    page.get_by_role("button", name="Cancel the bill").click()
    assert "This field is required." in page.locator(".field-error").inner_text()
    page.get_by_label("Reason").fill("Issued twice by mistake")
    page.get_by_role("button", name="Cancel the bill").click()
    page.wait_for_load_state("networkidle")
    bill.refresh_from_db()
    assert bill.cancelled_at is not None and bill.cancellation_reason == "Issued twice by mistake"
    assert page.locator(".badge-cancelled").count() >= 3
    shoot(page, "bill-cancelled")


def test_an_auditor_finds_no_control_that_writes(page, live) -> None:
    estate = make_estate(residents=2)
    bill = estate.wide_bill(title="Water")
    sign_in(page, live, estate.auditor.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/bills/"))
    assert page.get_by_role("link", name="New bill").count() == 0
    page.get_by_role("link", name="Water").click()
    buttons = [b.strip() for b in page.get_by_role("button").all_inner_texts()]
    assert sorted(buttons) == ["Show", "Sign out"], buttons
    shoot(page, "bill-auditor")
    assert page.goto(live(f"/estates/{estate.cluster.pk}/bills/new/")).status == 403
    assert Bill.objects.get(pk=bill.pk).cancelled_at is None


def test_another_estates_bill_is_the_404_page(page, live) -> None:
    mine, theirs = make_estate(residents=1), make_estate(residents=1)
    their_bill = theirs.wide_bill(title="Their levy")
    sign_in(page, live, mine.admin.user)
    for cluster in (theirs.cluster, mine.cluster):
        response = page.goto(live(f"/estates/{cluster.pk}/bills/{their_bill.pk}/"))
        assert response.status == 404
        assert page.get_by_role("heading", level=1).inner_text() == "We can't find that page"
        assert "Their levy" not in page.content()


def test_a_double_click_on_issue_makes_one_bill(page, live) -> None:
    estate = make_estate(residents=2)
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/bills/new/"))
    _fill_bill(page, "Borehole repair", "8000")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    # The form sent twice at once (a slow answer clicked again), then a double click: one key.
    statuses = page.evaluate(
        """async () => {
            const form = document.querySelector('main form[method=post]');
            const send = () => fetch(form.action, {method: 'POST', body: new FormData(form), redirect: 'manual'});
            return (await Promise.all([send(), send()])).map(a => a.type);
        }"""
    )
    assert statuses == ["opaqueredirect", "opaqueredirect"], statuses
    page.get_by_role("button", name="Issue the bill").dblclick()
    page.wait_for_url(re.compile(r"/bills/[0-9a-f-]{36}/$"))
    page.wait_for_load_state("networkidle")
    bills = list(Bill.objects.filter(cluster=estate.cluster, title="Borehole repair"))
    assert len(posts) >= 3, posts
    assert len(bills) == 1
    assert page.url == live(f"/estates/{estate.cluster.pk}/bills/{bills[0].pk}/")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Borehole repair")
