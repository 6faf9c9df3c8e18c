"""Statements and receipts in a real browser: a treasurer downloads a member's statement
(CSV, then PDF) for a period from the member's page, a receipt from a payment's page;
a resident downloads their own statement from the wallet; a period that ends before it
starts is explained next to its field."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path

import pytest
from django.utils import timezone

from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge
from tests.conftest import access, make_estate, new_key
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def _downloaded(page, button: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def test_a_treasurer_downloads_a_members_statement_and_a_receipt(page, live) -> None:
    estate = make_estate(residents=2)
    member = estate.residents[0]
    estate.fund(member, "30000.00")
    bill = estate.wide_bill()
    bill_acknowledge(access=access(member), bill=bill)
    payment = bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    today = timezone.localdate()
    sign_in(page, live, estate.treasurer.user)
    page.get_by_role("link", name="Members").click()
    page.get_by_role("link", name=member.user.get_full_name()).click()
    page.get_by_label("First day").fill(today.replace(day=1).isoformat())
    page.get_by_label("Last day").fill(today.isoformat())
    shoot(page, "member-statement")
    name, body = _downloaded(page, "Download the statement (CSV)")
    assert name == f"statement-{today.replace(day=1)}-{today}.csv"
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert [r[2] for r in rows[1:]] == ["opening_balance", "deposit", "bill_payment", "closing_balance"]
    assert rows[-1][6] == "15000.00"
    name, body = _downloaded(page, "Download the statement (PDF)")
    assert name.endswith(".pdf") and body.startswith(b"%PDF")

    # A mistake: the page says so next to the field, and downloads nothing.
    page.get_by_label("First day").fill(today.isoformat())
    page.get_by_label("Last day").fill((today.replace(day=1) - datetime.timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Download the statement (PDF)").click()
    page.locator("#id_start_error").wait_for()
    assert page.locator("#id_start_error").inner_text() == "The start must be on or before the end."
    assert page.get_by_role("heading", level=1).inner_text() == f"Statement of {member.user.get_full_name()}"

    page.get_by_role("link", name="Transactions").click()
    page.locator("tr", has_text=bill.title).get_by_role("link").first.click()
    page.wait_for_url(f"**/transactions/{payment.pk}/")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the receipt (PDF)").click()
    assert Path(info.value.path()).read_bytes().startswith(b"%PDF")


def test_a_resident_downloads_their_statement_from_the_wallet(page, live) -> None:
    estate = make_estate(residents=1)
    member = estate.residents[0]
    estate.fund(member, "4200.00")
    sign_in(page, live, member.user)
    page.get_by_role("link", name="Wallet", exact=True).click()
    shoot(page, "wallet-statement")
    name, body = _downloaded(page, "Download the statement (CSV)")
    assert name.endswith(".csv")
    assert list(csv.reader(io.StringIO(body.decode())))[-1][6] == "4200.00"
