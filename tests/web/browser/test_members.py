"""The member pages in a real browser: the hover card opens on the mouse and on the
keyboard with the member's figures and closes with Escape; money received is recorded
once on a double click; an auditor finds no control that writes."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from levy.wallets.models import Transaction, TransactionType
from tests.conftest import Estate, access, make_estate, new_key
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def _estate_with_figures() -> Estate:
    """Resident 0 paid the levy and owes an overdue bill of their own; resident 1
    disputes the levy."""
    estate = make_estate(residents=3)
    levy = estate.wide_bill(title="Service charge December", amount=Decimal("15000.00"))
    payer, disputer, _ = estate.residents
    estate.fund(payer, "20000.00")
    bill_acknowledge(access=access(payer), bill=levy)
    bill_pay(access=access(payer), bill=levy, idempotency_key=new_key("pay"))
    gate = estate.user_bill(payer, title="Gate remote", amount=Decimal("2500.00"))
    Bill.objects.filter(pk=gate.pk).update(due_date=estate_today() - datetime.timedelta(days=3))
    bill_dispute(access=access(disputer), bill=levy, reason="I moved out in November")
    return estate


def _card_text(card) -> str:
    card.locator(".card-figures, .last-payment").first.wait_for()
    return " ".join(card.inner_text().split())


def test_the_hover_card_opens_on_hover_and_on_keyboard_focus(page, live) -> None:
    estate = _estate_with_figures()
    payer, disputer, _ = estate.residents
    sign_in(page, live, estate.treasurer.user)
    page.get_by_role("link", name="Members").click()
    page.wait_for_load_state("networkidle")

    # The mouse: point at the payer's row.
    page.locator("tr", has_text=payer.user.email).hover()
    card = page.locator(f"#card-{payer.user_id}")
    card.wait_for(state="visible")
    text = _card_text(card)
    assert "Outstanding ₦2,500.00 (1 bill)" in text, text
    assert "Overdue 1" in text and "Not acknowledged 1" in text and "Disputed 0" in text and "Paid 1" in text
    assert "Last payment: ₦15,000.00 for Service charge December" in text
    assert card.get_attribute("role") == "tooltip"
    link = page.get_by_role("link", name=payer.user.name, exact=True)
    assert link.get_attribute("aria-describedby") == f"card-{payer.user_id}"
    shoot(page, "members-hover-card", full_page=False)
    # The screenshots resized the window under the pointer: point at the row again.
    page.mouse.move(0, 0)
    page.locator("tr", has_text=payer.user.email).hover()
    card.wait_for(state="visible")
    page.keyboard.press("Escape")
    card.wait_for(state="hidden")
    page.wait_for_timeout(300)
    assert card.is_hidden()  # and stays closed while the pointer rests on the row

    # The keyboard alone: Tab to the disputer's name; its card opens; Escape closes it.
    page.mouse.move(0, 0)
    page.get_by_text("Filters").focus()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == disputer.user.name:
            break
    assert page.evaluate("document.activeElement.textContent") == disputer.user.name
    card = page.locator(f"#card-{disputer.user_id}")
    card.wait_for(state="visible")
    text = _card_text(card)
    assert "Outstanding ₦15,000.00 (1 bill)" in text and "Disputed 1" in text and "Overdue 0" in text, text
    assert "Last payment: none yet" in text
    assert page.locator(f"#card-{payer.user_id}").is_hidden()
    page.keyboard.press("Escape")
    card.wait_for(state="hidden")
    # Enter on the focused name opens the member's page.
    page.keyboard.press("Enter")
    page.wait_for_url(live(f"/estates/{estate.cluster.pk}/members/{disputer.user_id}/"))
    assert page.get_by_text("I moved out in November").is_visible()


def test_the_members_list_filters_in_the_url(page, live) -> None:
    estate = _estate_with_figures()
    payer = estate.residents[0]
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/"))
    shoot(page, "members")
    page.get_by_text("Filters").click()
    page.get_by_label("Has an overdue bill").check()
    page.get_by_role("button", name="Show members").click()
    page.wait_for_load_state("networkidle")
    assert "has_overdue=on" in page.url
    rows = page.locator("tr.member-row")
    assert rows.count() == 1 and payer.user.email in rows.first.inner_text()
    assert "1 overdue" in rows.first.inner_text()


def test_record_money_received_once_on_a_double_click(page, live) -> None:
    estate = _estate_with_figures()
    member = estate.residents[2]
    sign_in(page, live, estate.treasurer.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/"))
    page.get_by_role("link", name=member.user.name, exact=True).click()
    page.wait_for_load_state("networkidle")
    page.get_by_label("Amount received").fill("7500")
    page.get_by_label("Note (optional)").fill("Cash at the gate office")
    sent_key = page.locator("input[name=idempotency_key]").input_value()
    shoot(page, "member")
    page.get_by_role("button", name="Record money received").dblclick()
    page.wait_for_load_state("networkidle")
    page.get_by_role("status").wait_for()
    credits = Transaction.objects.filter(payer=member.user, type=TransactionType.DEPOSIT)
    assert credits.count() == 1
    tx = credits.get()
    assert tx.amount == Decimal("7500.00") and tx.note == "Cash at the gate office"
    assert f"Recorded ₦7,500.00 received for {member.user.name}" in page.get_by_role("status").inner_text()
    ledger = page.get_by_role("region", name="Ledger of this member")
    assert ledger.locator("tbody tr").count() == 1
    assert "+₦7,500.00" in ledger.inner_text() and tx.reference in ledger.inner_text()
    assert page.locator(".balance").inner_text() == "₦7,500.00"
    # The form after the credit is a new one (a new key): the next credit is another one.
    assert page.locator("input[name=idempotency_key]").input_value() != sent_key
    # The back button: the browser asks for the page again, which shows the credit on the
    # ledger and a fresh form (a new key, no amount): nothing is sent again by itself.
    page.go_back()
    page.wait_for_load_state("networkidle")
    assert page.get_by_label("Amount received").input_value() == ""
    assert page.locator("input[name=idempotency_key]").input_value() != sent_key
    assert tx.reference in page.get_by_role("region", name="Ledger of this member").inner_text()
    assert credits.count() == 1


def test_an_auditor_finds_no_control_that_writes(page, live) -> None:
    estate = _estate_with_figures()
    member = estate.residents[0]
    sign_in(page, live, estate.auditor.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/{member.user_id}/"))
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", name=member.user.name).is_visible()
    main = page.locator("main")
    assert main.locator("form[method=post]").count() == 0
    # The only buttons download the member's statement (a form that reads: GET).
    assert main.get_by_role("button").all_inner_texts() == [
        "Download the statement (PDF)",
        "Download the statement (CSV)",
    ]
    assert main.locator("form[method=get] button").count() == 2
    shoot(page, "member-auditor")
    page.goto(live(f"/estates/{estate.cluster.pk}/members/"))
    assert page.locator("main form[method=post]").count() == 0
    assert page.get_by_role("link", name="Add a member").count() == 0


def test_an_admin_changes_a_role_then_deactivates_with_the_keyboard(page, live) -> None:
    estate = _estate_with_figures()
    member = estate.residents[2]
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/{member.user_id}/"))
    page.get_by_label("Role", exact=True).select_option("treasurer")
    page.get_by_role("button", name="Change the role").press("Enter")
    page.wait_for_load_state("networkidle")
    assert f"{member.user.name} is now Treasurer." in page.get_by_role("status").inner_text()
    member.refresh_from_db()
    assert member.role == "treasurer" and member.active
    # Deactivating takes two steps: open the warning, then confirm.
    assert page.get_by_role("button", name="Deactivate this member").is_hidden()
    page.get_by_text("Deactivate…").focus()
    page.keyboard.press("Enter")
    shoot(page, "member-admin")
    page.get_by_role("button", name="Deactivate this member").press("Enter")
    page.wait_for_load_state("networkidle")
    assert "is deactivated" in page.get_by_role("status").inner_text()
    member.refresh_from_db()
    assert member.active is False
    assert page.get_by_role("button", name="Deactivate this member").count() == 0


def test_record_money_received_with_the_keyboard_alone(page, live) -> None:
    estate = _estate_with_figures()
    member = estate.residents[1]
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/{member.user_id}/"))
    page.get_by_label("Amount received").focus()
    page.keyboard.type("2500.50")
    page.keyboard.press("Tab")
    page.keyboard.type("Transfer 7781")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # submits the form from its last field
    tx = Transaction.objects.get(payer=member.user, type=TransactionType.DEPOSIT, note="Transfer 7781")
    assert tx.amount == Decimal("2500.50") and tx.initiated_by_id == estate.admin.user_id
    assert page.locator(".balance").inner_text() == "₦2,500.50"
    # A bad amount is explained next to the field; nothing moves.
    page.get_by_label("Amount received").focus()
    page.keyboard.type("12,5x")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#id_amount_error").is_visible()
    assert Transaction.objects.filter(payer=member.user, type=TransactionType.DEPOSIT).count() == 1
