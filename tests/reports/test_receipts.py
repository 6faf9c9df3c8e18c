"""Receipts: what a receipt says, who may download it, and the link in the payment and
top-up emails."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from levy.access import access_own_transaction, access_transaction
from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge
from levy.common.errors import InsufficientFundsError, NotFoundError, PermissionDeniedError
from levy.estates.permissions import Role
from levy.reports.pdf import money, render_receipt, when
from levy.reports.selectors import Receipt, receipt_of
from levy.wallets.models import Transaction, TransactionStatus
from tests.api.conftest import api_as, base
from tests.conftest import Estate, access, committed, make_estate, new_key
from tests.payments.conftest import connect, get_return, start
from tests.reports.conftest import queries_of_download
from tests.web.conftest import browser_as

pytestmark = pytest.mark.django_db


def own_receipt(caller: Any, transaction_id: Any) -> Receipt:
    """The receipt as the payer's endpoint reads it."""
    return receipt_of(access_own_transaction(caller, transaction_id), access=caller)


def staff_receipt(caller: Any, transaction_id: Any) -> Receipt:
    """The receipt as the managers' endpoint reads it."""
    return receipt_of(access_transaction(caller, transaction_id), access=caller)


def paid(estate: Estate, member: Any, amount: str = "15000.00") -> Transaction:
    estate.fund(member, "20000.00")
    bill = estate.wide_bill(title="Service charge December", amount=Decimal(amount))
    bill_acknowledge(access=access(member), bill=bill)
    with committed():
        return bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))


def test_a_payment_receipt_carries_estate_payer_bill_amount_time_and_ledger_reference(estate: Estate) -> None:
    member = estate.residents[0]
    tx = paid(estate, member)
    receipt = own_receipt(access(member), tx.pk)
    assert receipt.estate_name == estate.cluster.name
    assert (receipt.payer_name, receipt.payer_email) == (member.user.name, member.user.email)
    assert (receipt.bill_reference, receipt.bill_title) == (tx.bill.reference, "Service charge December")
    assert (receipt.amount, receipt.currency, receipt.kind) == (Decimal("15000.00"), "NGN", "Bill payment")
    assert receipt.ledger_reference == tx.reference
    assert receipt.paid_at == tx.created_at
    assert receipt.paid_at.tzinfo is not None and receipt.paid_at.utcoffset() == timezone.localtime().utcoffset()
    assert receipt.balance_after == Decimal("5000.00")
    assert receipt.filename == f"receipt-{tx.reference}.pdf"
    # The estate's staff read the same receipt.
    assert staff_receipt(access(estate.auditor), tx.pk) == receipt


def test_a_top_up_has_a_receipt_too(estate: Estate) -> None:
    member = estate.residents[0]
    deposit = estate.fund(member, "2500.50")
    receipt = own_receipt(access(member), deposit.pk)
    assert (receipt.kind, receipt.amount, receipt.bill_reference, receipt.note) == (
        "Wallet top-up",
        Decimal("2500.50"),
        "",
        "cash",
    )


def test_failed_entries_have_no_receipt(estate: Estate) -> None:
    member = estate.residents[0]
    bill = estate.wide_bill()
    bill_acknowledge(access=access(member), bill=bill)
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    failed = Transaction.objects.get(status=TransactionStatus.FAILED)
    with pytest.raises(NotFoundError):
        own_receipt(access(member), failed.pk)
    with pytest.raises(NotFoundError):
        staff_receipt(access(estate.admin), failed.pk)


def test_only_the_payer_and_the_estates_managers_read_a_receipt(estate: Estate, other_estate: Estate) -> None:
    tx = paid(estate, estate.residents[0])
    with pytest.raises(NotFoundError):
        own_receipt(access(estate.residents[1]), tx.pk)
    with pytest.raises(NotFoundError):
        own_receipt(access(estate.admin), tx.pk)  # an admin reads it as staff, not as their own
    with pytest.raises(PermissionDeniedError):
        staff_receipt(access(estate.residents[1]), tx.pk)
    with pytest.raises(NotFoundError):
        staff_receipt(access(other_estate.admin), tx.pk)
    for staff in (estate.admin, estate.treasurer, estate.auditor):
        assert staff_receipt(access(staff), tx.pk).ledger_reference == tx.reference


def test_the_pdf_is_one_page_named_after_the_ledger_reference(estate: Estate) -> None:
    tx = paid(estate, estate.residents[0])
    pdf = render_receipt(own_receipt(access(estate.residents[0]), tx.pk))
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/Count 1" in pdf
    assert f"/Title (Receipt {tx.reference})".encode() in pdf
    assert f"/Author ({estate.cluster.name})".encode() in pdf


def test_amounts_and_times_read_exactly() -> None:
    assert money(Decimal("1234567.05"), "NGN") == "NGN 1,234,567.05"
    assert money(Decimal("-10.10"), "USD") == "\N{MINUS SIGN}USD 10.10"
    moment = timezone.localtime(datetime.datetime(2026, 12, 5, 16, 12, tzinfo=datetime.UTC))
    assert when(moment) == "5 December 2026, 17:12 WAT (UTC+01:00)"


def test_the_payment_email_links_to_the_receipt(estate: Estate, settings: Any) -> None:
    settings.LEVY_SITE_URL = "https://levy.example.test/"
    member = estate.residents[0]
    mail.outbox.clear()
    tx = paid(estate, member)
    [message] = [m for m in mail.outbox if m.subject.startswith("Receipt:")]
    url = f"https://levy.example.test/api/v1/clusters/{estate.cluster.pk}/transactions/{tx.pk}/receipt/"
    assert f"Your receipt (PDF): {url}" in message.body
    assert f'<a href="{url}">Download your receipt (PDF)</a>' in message.alternatives[0][0]
    # The link works for the payer.
    response = api_as(member).client.get(url.removeprefix("https://levy.example.test"))
    assert response.status_code == 200


def test_other_emails_have_no_receipt_link(estate: Estate) -> None:
    mail.outbox.clear()
    estate.wide_bill()
    assert mail.outbox
    assert all("receipt" not in m.body.lower() for m in mail.outbox)


# --- over HTTP ------------------------------------------------------------------------------


def test_the_payer_downloads_the_receipt(estate: Estate) -> None:
    member = estate.residents[0]
    tx = paid(estate, member)
    response = api_as(member).client.get(f"{base(estate)}/transactions/{tx.pk}/receipt/", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="receipt-{tx.reference}.pdf"'
    assert response["Cache-Control"] == "private, no-store"
    assert response.content.startswith(b"%PDF-")


def test_managers_download_any_receipt_and_residents_do_not(estate: Estate) -> None:
    tx = paid(estate, estate.residents[0])
    path = f"{base(estate)}/management/transactions/{tx.pk}/receipt/"
    for staff in (estate.admin, estate.treasurer, estate.auditor):
        assert api_as(staff).client.get(path).status_code == 200
    refused = api_as(estate.residents[1]).client.get(path)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    # Someone else's receipt through the member URL is simply not there.
    hidden = api_as(estate.residents[1]).client.get(f"{base(estate)}/transactions/{tx.pk}/receipt/")
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "not_found")
    # A JSON error even for a client that asked for a PDF.
    assert api_as(estate.residents[1]).client.get(path, HTTP_ACCEPT="application/pdf").status_code == 403


def test_another_estates_receipt_is_not_found() -> None:
    a, b = make_estate(), make_estate()
    tx = paid(a, a.residents[0])
    for path in (
        f"{base(b)}/management/transactions/{tx.pk}/receipt/",
        f"{base(a)}/management/transactions/{tx.pk}/receipt/",
    ):
        response = api_as(b.admin).client.get(path)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("who", ["payer", "staff"])
def test_a_receipt_costs_the_same_queries_whatever_the_ledger_holds(estate: Estate, who: str) -> None:
    member = estate.residents[0]
    tx = paid(estate, member, amount="100.00")
    caller, prefix = (member, "") if who == "payer" else (estate.admin, "/management")
    path = f"{base(estate)}{prefix}/transactions/{tx.pk}/receipt/"

    first = queries_of_download(caller, path)
    for _ in range(5):
        estate.fund(member, "10.00")
        paid(estate, estate.add(role=Role.RESIDENT), amount="100.00")
    # the user (token) with the membership and its estate, the entry with its bill
    # [, the payer: on their own receipt the payer is the caller]
    assert queries_of_download(caller, path) == first == (2 if who == "payer" else 3)


def test_the_top_up_email_links_to_its_receipt(estate: Estate, fake_provider_server: Any, settings: Any) -> None:
    """A top-up credited through the provider (the fake, over HTTP) is announced by
    TOP_UP_CREDITED, whose email links to the deposit's receipt, which the payer opens."""
    settings.LEVY_SITE_URL = "https://levy.example.test"
    fake = fake_provider_server.fake
    connect(estate, fake)
    member = estate.residents[0]
    top_up = start(member, "5000.00")
    fake.pay(top_up.reference, send_webhook=False)
    mail.outbox.clear()
    with committed():
        assert get_return(top_up.reference).json()["status"] == "credited"
    top_up.refresh_from_db()
    [message] = [m for m in mail.outbox if m.subject == "Wallet topped up: ₦5,000.00"]
    assert message.to == [member.user.email]
    url = f"https://levy.example.test/api/v1/clusters/{estate.cluster.pk}/transactions/{top_up.transaction_id}/receipt/"
    assert f"Your receipt (PDF): {url}" in message.body
    assert f'<a href="{url}">Download your receipt (PDF)</a>' in message.alternatives[0][0]
    response = api_as(member).client.get(url.removeprefix("https://levy.example.test"))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")


def test_the_inbox_links_the_payment_notification_to_its_receipt(estate: Estate) -> None:
    member = estate.residents[0]
    tx = paid(estate, member)
    html = browser_as(member).get("/notifications/").content.decode()
    path = f"/api/v1/clusters/{estate.cluster.pk}/transactions/{tx.pk}/receipt/"
    assert html.count(f'<a href="{path}">Receipt (PDF)') == 1
    # Only the payment's notification carries it (not the new bill's).
    assert html.count("Receipt (PDF)") == 1
    response = browser_as(member).get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
