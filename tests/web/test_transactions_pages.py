"""The transactions pages over HTTP: the ledger with filters in the URL (type, status,
member, dates) and pages, one entry, refunding a payment once (the idempotency key
drawn in the form) — of a cancelled bill, or of a live one, which the payer then owes
again — who may do it, the CSV with the list's filters, and the queries each page costs."""

from __future__ import annotations

import csv
import datetime
import io
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from levy.audit.models import AuditEvent
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.billing.status import BillStatus
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionType, Wallet
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, make_estate, new_key
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db


def _paid(estate: Estate, n: int = 0, *, title: str = "Streetlight", cancel: bool = True) -> tuple[Bill, Transaction]:
    member = estate.residents[n]
    bill = estate.wide_bill(title=title, amount=Decimal("5000.00"))
    estate.fund(member, "20000.00")
    bill_acknowledge(access=access(member), bill=bill)
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))
    if cancel:
        bill_cancel(access=access(estate.admin), bill=bill, reason="Covered by the power company")
    payment = Transaction.objects.get(bill=bill, payer=member.user, type=TransactionType.BILL_PAYMENT)
    return bill, payment


def _key(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_the_ledger_shows_each_entry_with_its_member_and_bill(estate: Estate) -> None:
    _bill, payment = _paid(estate, 0, cancel=False)
    html = browser_as(estate.auditor).get(estate_url(estate, "transactions/")).content.decode()
    assert payment.reference in html and "Streetlight" in html
    assert estate.residents[0].user.email in html
    assert "-₦5,000.00" in html and "₦20,000.00" in html  # the payment and the deposit
    browser = browser_as(estate.auditor)
    entry = browser.get(estate_url(estate, f"transactions/{payment.pk}/")).content.decode()
    assert "Streetlight" in entry and "Wallet balance after" in entry and "₦15,000.00" in entry
    receipt = re.search(r'href="([^"]+)" download>Download the receipt', entry).group(1)  # type: ignore[union-attr]
    pdf = browser.get(receipt)  # the API's receipt, with the page's session
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ({"type": "deposit"}, ["deposit"], ["bill_payment"]),
        ({"type": "bill_payment"}, ["bill_payment"], ["deposit"]),
        ({"status": "failed"}, [], ["deposit", "bill_payment"]),
        ({"search": "PERSON"}, ["deposit", "bill_payment"], []),
        ({"search": "nobody-like-this"}, [], ["deposit", "bill_payment"]),
        ({"created_from": "2999-01-01"}, [], ["deposit", "bill_payment"]),
        ({"created_to": "2000-01-01"}, [], ["deposit", "bill_payment"]),
        ({"created_from": "2000-01-01", "created_to": "2999-01-01"}, ["deposit", "bill_payment"], []),
    ],
)
def test_filters_live_in_the_url(estate: Estate, query: dict[str, str], shown: list[str], hidden: list[str]) -> None:
    _bill, payment = _paid(estate, 0, cancel=False)
    deposit = Transaction.objects.get(payer=payment.payer, type=TransactionType.DEPOSIT)
    refs = {"deposit": deposit.reference, "bill_payment": payment.reference}
    html = browser_as(estate.admin).get(estate_url(estate, "transactions/"), **query).content.decode()
    for kind in shown:
        assert refs[kind] in html, (query, kind)
    for kind in hidden:
        assert refs[kind] not in html, (query, kind)


def test_the_member_search_and_the_days_are_the_estates(estate: Estate) -> None:
    _paid(estate, 0, cancel=False)
    _bill, other = _paid(estate, 1, title="Water", cancel=False)
    browser = browser_as(estate.admin)
    member = estate.residents[1].user
    html = browser.get(estate_url(estate, "transactions/"), search=member.email.upper()).content.decode()
    assert other.reference in html and estate.residents[0].user.email not in html
    today = timezone.localdate()
    days = {
        "yesterday": today - datetime.timedelta(days=1),
        "today": today,
        "tomorrow": today + datetime.timedelta(days=1),
    }
    for start, end, found in [
        ("today", "today", True),
        ("yesterday", "yesterday", False),
        ("tomorrow", "tomorrow", False),
        ("yesterday", "tomorrow", True),
    ]:
        page = browser.get(
            estate_url(estate, "transactions/"), created_from=days[start].isoformat(), created_to=days[end].isoformat()
        ).content.decode()
        assert (other.reference in page) is found, (start, end)
    bad = browser.get(estate_url(estate, "transactions/"), created_from=today.isoformat(), created_to="2000-01-01")
    assert bad.status_code == 200
    assert "The last day must be on or after the first day." in bad.content.decode()
    assert browser.get(estate_url(estate, "transactions/"), created_from="not-a-date").status_code == 200


def test_the_ledger_pages_by_cursor(estate: Estate) -> None:
    member = estate.residents[0]
    for n in range(30):
        estate.fund(member, f"{100 + n}.00")
    browser = browser_as(estate.admin)
    first = browser.get(estate_url(estate, "transactions/"), type="deposit").content.decode()
    assert "₦129.00" in first and "₦100.00" not in first
    cursor = first.split("after=")[1].split('"')[0]
    second = browser.get(estate_url(estate, "transactions/") + f"?type=deposit&after={cursor}").content.decode()
    assert "₦100.00" in second and "₦129.00" not in second


def test_refunding_a_payment_of_a_cancelled_bill_moves_money_once_however_often_it_is_sent(estate: Estate) -> None:
    bill, payment = _paid(estate, 0)
    wallet = Wallet.objects.get(cluster=estate.cluster, user=payment.payer)
    before = wallet.balance
    browser = browser_as(estate.treasurer)
    path = estate_url(estate, f"transactions/{payment.pk}/")
    form = browser.get(path).content.decode()
    assert "Refund to the wallet" in form
    key = _key(form)
    first = browser.post(path, {"reason": "Bill cancelled", "idempotency_key": key})
    again = browser.post(path, {"reason": "Bill cancelled", "idempotency_key": key})
    refund = Transaction.objects.get(reverses=payment)
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == estate_url(estate, f"transactions/{refund.pk}/")
    wallet.refresh_from_db()
    assert wallet.balance == before + Decimal("5000.00")
    assert (refund.type, refund.amount, refund.note) == (TransactionType.REFUND, Decimal("5000.00"), "Bill cancelled")
    assert AuditEvent.objects.filter(action="payment.refund", cluster=estate.cluster).count() == 1
    page = browser.get(first["Location"]).content.decode()
    assert page.count("Refunded to") == 1  # the second submit adds no second line
    # The back button to the payment: refunded already, no form.
    payment_page = browser.get(path).content.decode()
    assert "Refund to the wallet" not in payment_page and refund.reference in payment_page
    # A fresh form's key, once it is refunded: refused, in words.
    third = browser.post(path, {"reason": "Again", "idempotency_key": new_key("web")})
    assert "This payment has already been refunded." in browser.get(third["Location"]).content.decode()
    assert Transaction.objects.filter(reverses=payment).count() == 1 and bill.pk == refund.bill_id


def test_a_reason_is_required(estate: Estate) -> None:
    _cancelled, payment = _paid(estate, 1, title="Water")
    browser = browser_as(estate.admin)
    path = estate_url(estate, f"transactions/{payment.pk}/")
    key = _key(browser.get(path).content.decode())
    empty = browser.post(path, {"reason": " ", "idempotency_key": key})
    assert empty.status_code == 400 and "Give a reason: the payer reads it with the refund." in empty.content.decode()
    no_key = browser.post(path, {"reason": "x"})
    assert no_key.status_code == 400 and "This form is out of date." in no_key.content.decode()
    assert not Transaction.objects.filter(type=TransactionType.REFUND).exists()


def test_a_payment_of_a_live_bill_is_refunded_and_the_payer_owes_it_again(estate: Estate) -> None:
    bill, live = _paid(estate, 0, cancel=False)
    browser = browser_as(estate.admin)
    path = estate_url(estate, f"transactions/{live.pk}/")
    page = browser.get(path).content.decode()
    assert "Refund to the wallet" in page and "No refund" not in page
    assert "owes it again and can pay it again" in page
    refunded = browser.post(path, {"reason": "Paid at the office", "idempotency_key": _key(page)})
    refund = Transaction.objects.get(reverses=live)
    assert refunded["Location"] == estate_url(estate, f"transactions/{refund.pk}/")
    assert refund.reopens_bill
    entry = browser.get(refunded["Location"]).content.decode()
    assert "owes it again</dd>" in entry and "The bill is not cancelled: they owe it again." in entry
    payer = estate.residents[0]
    assert bill.status_for(payer.user) == BillStatus.ACKNOWLEDGED
    # On the bill's own page, filtered on "paid", nobody is left; on "acknowledged", the payer.
    paid_list = browser.get(estate_url(estate, f"bills/{bill.pk}/") + "?status=paid").content.decode()
    assert "No member has this status on this bill." in paid_list
    acknowledged = browser.get(estate_url(estate, f"bills/{bill.pk}/") + "?status=acknowledged").content.decode()
    assert payer.user.email in acknowledged
    assert Transaction.objects.filter(type=TransactionType.REFUND).count() == 1


def test_nobody_refunds_a_payment_to_themselves(estate: Estate) -> None:
    staff = estate.admin
    Membership.objects.filter(pk=staff.pk).update(is_resident=True)
    staff.refresh_from_db()
    estate.fund(staff, "20000.00")
    own = estate.user_bill(staff, title="Own levy")
    bill_acknowledge(access=access(staff), bill=own)
    bill_pay(access=access(staff), bill=own, idempotency_key=new_key("pay"))
    bill_cancel(access=access(estate.treasurer), bill=own, reason="Mistake")
    payment = Transaction.objects.get(bill=own, type=TransactionType.BILL_PAYMENT)
    browser = browser_as(staff)
    path = estate_url(estate, f"transactions/{payment.pk}/")
    key = _key(browser.get(path).content.decode())
    refused = browser.post(path, {"reason": "Mine", "idempotency_key": key})
    assert refused.status_code == 302
    assert not Transaction.objects.filter(reverses=payment).exists()
    message = browser.get(refused["Location"]).content.decode().split('role="status"')[1].split("</div>")[0]
    assert "message-error" in message and "refund" in message.lower(), message


@pytest.mark.parametrize("who", ["auditor", "resident"])
def test_those_who_do_not_manage_transactions_cannot_refund(estate: Estate, who: str) -> None:
    _bill, payment = _paid(estate, 0)
    member = estate.auditor if who == "auditor" else estate.residents[1]
    browser = browser_as(member)
    before = db_snapshot()
    response = browser.post(
        estate_url(estate, f"transactions/{payment.pk}/"), {"reason": "x", "idempotency_key": new_key("web")}
    )
    assert response.status_code == 403
    assert db_snapshot() == before
    page = browser.get(estate_url(estate, f"transactions/{payment.pk}/"))
    if who == "auditor":
        html = page.content.decode()
        assert page.status_code == 200 and "Refund to the wallet" not in html and html.count('method="post"') == 1
    else:
        assert page.status_code == 403


def test_the_csv_has_the_lists_filters(estate: Estate) -> None:
    _bill, payment = _paid(estate, 0, cancel=False)
    _paid(estate, 1, title="Water", cancel=False)
    browser = browser_as(estate.auditor)
    query = {"type": "bill_payment", "search": estate.residents[0].user.email}
    page = browser.get(estate_url(estate, "transactions/"), **query).content.decode()
    link = re.search(r'href="([^"]*transactions/export\.csv[^"]*)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    response = browser.get(link)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["id"] for r in rows] == [str(payment.pk)]


# --- queries ------------------------------------------------------------------------------

EXPECTED = {"transactions": 5, "transactions-filtered": 5, "transaction": 7}


def _estate_with(payments: int) -> tuple[Estate, Transaction]:
    estate = make_estate(residents=payments)
    payment = None
    for n in range(payments):
        _bill, payment = _paid(estate, n, title=f"Bill {n}")
    assert payment is not None
    return estate, payment


def test_each_transactions_page_costs_the_same_queries_with_1_or_many_rows() -> None:
    small = _estate_with(1)
    large = _estate_with(12)
    seen = {}
    for name, path, params in [
        ("transactions", "transactions/", {}),
        ("transactions-filtered", "transactions/", {"type": "bill_payment", "search": "person"}),
        ("transaction", "transactions/{tx}/", {}),
    ]:
        counts = []
        for estate, payment in (small, large):
            browser = browser_as(estate.admin)
            url = estate_url(estate, path.format(tx=payment.pk))
            browser.get(url, **params)
            n, response = count_queries(lambda: browser.client.get(url, params))  # noqa: B023
            assert response.status_code == 200
            counts.append(n)
        seen[name] = counts
    assert seen == {name: [n, n] for name, n in EXPECTED.items()}
