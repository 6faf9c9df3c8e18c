"""The resident's pages over HTTP: My bills (its sections and actions, the same bills
the API lists), one bill (acknowledge, dispute, the refusals and what to do), paying
from the wallet once per form, the wallet with its history and top-up, the inbox, who
may open what, and the queries each page costs."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from levy.billing.models import BillAcknowledgement, BillDispute
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.selectors import estate_today, member_bill_list
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute, dispute_resolve
from levy.notifications.models import Notification
from levy.payments.models import TopUp
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.web.views.resident import BillLinks
from tests.conftest import Estate, access, committed, make_estate, new_key
from tests.payments.conftest import connect, fake  # noqa: F401 - the fixture
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db


def _in(days: int) -> datetime.date:
    return estate_today() + datetime.timedelta(days=days)


def _overdue(estate: Estate, member: Any, **overrides: Any) -> Any:
    """A bill of ``member``'s whose due date has passed (issued with a future due date,
    as the service insists, then moved back)."""
    bill = estate.user_bill(member, **overrides)
    type(bill).objects.filter(pk=bill.pk).update(due_date=_in(-12))
    bill.refresh_from_db()
    return bill


def _sections(html: str) -> list[str]:
    return re.findall(r'<h2 id="([a-z-]+)-heading"', html)


def _payments(member: Any, bill: Any) -> list[Transaction]:
    return list(Transaction.objects.filter(payer=member.user, bill=bill, type=TransactionType.BILL_PAYMENT))


# --- My bills ----------------------------------------------------------------------------------


def test_my_bills_puts_what_to_pay_first_with_one_action_each(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "100000.00")
    to_ack = estate.wide_bill(title="Service charge", due_date=_in(3))
    to_pay = estate.wide_bill(title="Security levy", amount=Decimal("5000.00"), due_date=_in(10))
    bill_acknowledge(access=access(me), bill=to_pay)
    late = _overdue(estate, me, title="Gate remote", amount=Decimal("2500.00"))
    disputed = estate.wide_bill(title="Generator diesel")
    bill_dispute(access=access(me), bill=disputed, reason="We were away")
    paid = estate.wide_bill(title="Water")
    bill_acknowledge(access=access(me), bill=paid)
    bill_pay(access=access(me), bill=paid, idempotency_key=new_key("pay"))
    estate.user_bill(estate.residents[1], title="Someone else's bill")

    html = browser_as(me).get(estate_url(estate, "my-bills/")).content.decode()
    assert _sections(html) == ["to-pay", "overdue", "disputed", "settled"]
    order = [html.index(t) for t in ("Service charge", "Security levy", "Gate remote", "Generator diesel", "Water")]
    assert order == sorted(order)
    assert "Someone else" not in html
    assert "due in 3 days" in html and "due in 10 days" in html and "overdue by 12 days" in html
    assert "₦15,000.00" in html and "₦5,000.00" in html
    pay_url = f"/estates/{estate.cluster.pk}/my-bills/{to_pay.pk}/pay/"
    assert f'href="{pay_url}">Pay ₦5,000.00' in html
    assert f'href="/estates/{estate.cluster.pk}/my-bills/{to_ack.pk}/#acknowledge">Read and acknowledge' in html
    assert f"/my-bills/{late.pk}/#acknowledge" in html  # overdue and never acknowledged
    assert f'/my-bills/{disputed.pk}/#dispute">View your dispute' in html
    assert f'/my-bills/{paid.pk}/#paid">View receipt' in html
    for status in ("pending", "acknowledged", "overdue", "disputed", "paid"):
        assert f"badge-{status}" in html, status


def test_my_bills_shows_exactly_the_bills_the_api_lists(estate: Estate) -> None:
    me = estate.residents[1]
    for n in range(3):
        estate.wide_bill(title=f"Estate bill {n}")
    estate.user_bill(me, title="Mine only")
    estate.user_bill(estate.residents[0], title="Not mine")
    cancelled = estate.wide_bill(title="Cancelled levy")
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="Issued twice")
    html = browser_as(me).get(estate_url(estate, "my-bills/")).content.decode()
    listed = {str(b.pk) for b in member_bill_list(access=access(me)).rows}
    shown = set(re.findall(r"/my-bills/([0-9a-f-]{36})/", html))
    assert shown == listed and len(listed) == 5
    api = Client()
    api.force_login(me.user)
    api_ids = {b["id"] for b in api.get(f"/api/v1/clusters/{estate.cluster.pk}/bills/").json()["results"]}
    assert shown == api_ids


def test_settled_bills_page_in_the_url(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "1000000.00")
    for n in range(12):
        bill = estate.user_bill(me, title=f"Paid bill {n:02d}", amount=Decimal("100.00"))
        bill_acknowledge(access=access(me), bill=bill)
        bill_pay(access=access(me), bill=bill, idempotency_key=new_key("pay"))
    browser = browser_as(me)
    first = browser.get(estate_url(estate, "my-bills/")).content.decode()
    assert first.count("badge-paid") == 10 and "Paid bill 11" in first and "Paid bill 01" not in first
    cursor = re.search(r'href="\?after=([^"]+)" rel="next"', first)
    assert cursor is not None
    second = browser.get(estate_url(estate, "my-bills/"), after=cursor.group(1)).content.decode()
    assert second.count("badge-paid") == 2 and "Paid bill 01" in second and "Paid bill 00" in second


def test_each_section_shows_the_bills_due_soonest_and_links_to_all(estate: Estate) -> None:
    me = estate.residents[0]
    for n in range(8):
        estate.wide_bill(title=f"Levy due in {20 - n:02d} days", due_date=_in(20 - n))
    browser = browser_as(me)
    html = browser.get(estate_url(estate, "my-bills/")).content.decode()
    shown = re.findall(r">Levy due in (\d\d) days</a>", html)
    assert shown == ["13", "14", "15", "16", "17"]  # the five due soonest, soonest first
    assert 'To pay <span class="muted">(8)</span>' in html
    all_url = f"/estates/{estate.cluster.pk}/my-bills/?all=to-pay#to-pay-heading"
    assert f'href="{all_url}">Show all 8' in html
    full = browser.get(estate_url(estate, "my-bills/"), all="to-pay").content.decode()
    assert re.findall(r">Levy due in (\d\d) days</a>", full) == [f"{d}" for d in range(13, 21)]
    assert "Show all" not in full


def test_residents_land_on_my_bills_and_managers_on_the_dashboard(estate: Estate) -> None:
    resident = browser_as(estate.residents[0])
    landing = resident.get("/")
    assert landing.status_code == 302
    assert resident.get(landing["Location"])["Location"] == estate_url(estate, "my-bills/")
    assert browser_as(estate.admin).get(estate_url(estate))["Location"] == estate_url(estate, "dashboard/")
    html = resident.get(estate_url(estate, "my-bills/")).content.decode()
    assert 'aria-current="page">My bills' in html and ">Wallet<" in html and ">Dashboard<" not in html


def test_empty_my_bills_says_so(estate: Estate) -> None:
    html = browser_as(estate.residents[0]).get(estate_url(estate, "my-bills/")).content.decode()
    assert "You owe nothing right now." in html and "No paid bill yet." in html
    assert "htmx.min.js" not in html  # plain forms and links: no script to download on mobile data


# --- one bill ------------------------------------------------------------------------------------


def test_acknowledge_records_when_address_and_browser(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(title="Service charge")
    path = estate_url(estate, f"my-bills/{bill.pk}/")
    browser = browser_as(me)
    html = browser.get(path).content.decode()
    assert "Acknowledge this bill" in html and "Acknowledge the bill before paying it." in html
    response = browser.post(path, {"action": "acknowledge"}, HTTP_USER_AGENT="Phone/1.0", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    ack = BillAcknowledgement.objects.get(bill=bill, user=me.user)
    assert (ack.ip_address, ack.user_agent) == ("10.1.2.3", "Phone/1.0")
    html = browser.get(path).content.decode()
    assert "Acknowledged. You can now pay it" in html
    assert "Acknowledge this bill" not in html and "badge-acknowledged" in html
    # Again: nothing changes.
    browser.post(path, {"action": "acknowledge"})
    assert BillAcknowledgement.objects.filter(bill=bill, user=me.user).count() == 1


def test_dispute_with_a_reason_then_see_its_answer(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(title="Generator diesel")
    path = estate_url(estate, f"my-bills/{bill.pk}/")
    browser = browser_as(me)
    empty = browser.post(path, {"action": "dispute", "reason": "   "})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()
    assert not BillDispute.objects.exists()
    assert browser.post(path, {"action": "dispute", "reason": "We were away all month"}).status_code == 302
    dispute = BillDispute.objects.get(bill=bill, user=me.user)
    html = browser.get(path).content.decode()
    assert "Open — waiting for the estate" in html and "We were away all month" in html
    assert "You have an open dispute on this bill." in html and "badge-disputed" in html
    dispute_resolve(access=access(estate.admin), dispute=dispute, resolution="rejected", note="The generator ran")
    html = browser.get(path).content.decode()
    assert "Rejected — you owe this bill as before" in html and "The generator ran" in html


@pytest.mark.parametrize(
    ("case", "reason", "next_step"),
    [
        ("not_acknowledged", "Acknowledge the bill before paying it.", "press “Acknowledge this bill”"),
        ("disputed", "You have an open dispute on this bill.", "once the estate answers your dispute"),
        ("past_due", "past its due date and no longer accepts payment", "estate&#x27;s office"),
    ],
)
def test_a_refused_payment_says_why_and_what_to_do(estate: Estate, case: str, reason: str, next_step: str) -> None:
    me = estate.residents[0]
    estate.fund(me, "50000.00")
    bill = _overdue(estate, me) if case == "past_due" else estate.wide_bill()
    if case != "not_acknowledged":
        bill_acknowledge(access=access(me), bill=bill)
    if case == "disputed":
        bill_dispute(access=access(me), bill=bill, reason="Wrong amount")
    browser = browser_as(me)
    for page in ("", "pay/"):
        html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/{page}")).content.decode()
        assert reason in html and next_step in html, (case, page)
        assert 'name="idempotency_key"' not in html
    response = browser.post(estate_url(estate, f"my-bills/{bill.pk}/pay/"), {"idempotency_key": new_key("web")})
    assert response.status_code == 409 and reason in response.content.decode()
    assert not _payments(me, bill)


def test_too_little_in_the_wallet_shows_the_shortfall_and_a_top_up_link(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "4000.00")
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    browser = browser_as(me)
    for page in ("", "pay/"):
        html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/{page}")).content.decode()
        assert "Not enough in your wallet." in html and "It holds ₦4,000.00" in html
        assert '<strong class="shortfall">₦11,000.00</strong>' in html
        assert f'href="/estates/{estate.cluster.pk}/wallet/#top-up"' in html
    # Submitted anyway (a form shown before the balance fell): refused, the attempt on the ledger.
    response = browser.post(estate_url(estate, f"my-bills/{bill.pk}/pay/"), {"idempotency_key": new_key("web")})
    assert response.status_code == 402
    assert "Your wallet does not have enough money for this bill." in response.content.decode()
    [failed] = _payments(me, bill)
    assert failed.status == TransactionStatus.FAILED


def test_pay_confirms_the_balance_after_then_moves_money_once_per_form(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    browser = browser_as(me)
    pay = estate_url(estate, f"my-bills/{bill.pk}/pay/")
    confirm = browser.get(pay)
    assert confirm["Cache-Control"] == "no-store"
    html = confirm.content.decode()
    assert "Your wallet now" in html and "₦20,000.00" in html and "Your wallet after" in html and "₦5,000.00" in html
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    # A double tap, a resubmit, the back button and submit again: the same form each time.
    answers = [browser.post(pay, {"idempotency_key": key}) for _ in range(3)]
    assert {(a.status_code, a["Location"]) for a in answers} == {(303, estate_url(estate, f"my-bills/{bill.pk}/#paid"))}
    [payment] = _payments(me, bill)
    assert payment.status == TransactionStatus.COMPLETED and payment.amount == Decimal("-15000.00")
    assert Wallet.objects.get(cluster=estate.cluster, user=me.user).balance == Decimal("5000.00")
    # The bill shows its receipt; the pay page (back, reloaded) offers no form.
    html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/")).content.decode()
    receipt = f"/api/v1/clusters/{estate.cluster.pk}/transactions/{payment.pk}/receipt/"
    assert payment.reference in html and receipt in html and "badge-paid" in html
    assert browser.client.get(receipt)["Content-Type"] == "application/pdf"
    again = browser.get(pay).content.decode()
    assert "Already paid" in again and 'name="idempotency_key"' not in again
    # A new form for a paid bill: refused in words, nothing moves.
    response = browser.post(pay, {"idempotency_key": new_key("web")})
    assert response.status_code == 409 and "You have already paid this bill." in response.content.decode()
    assert len(_payments(me, bill)) == 1


def test_a_refunded_payment_of_a_live_bill_is_explained_and_the_bill_can_be_paid_again(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    first = bill_pay(access=access(me), bill=bill, idempotency_key=new_key("pay"))
    with committed():
        bill_payment_refund(
            access=access(estate.treasurer), payment=first, idempotency_key=new_key("r"), note="Paid at the office"
        )
    browser = browser_as(me)
    html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/")).content.decode()
    assert "The estate refunded your payment of ₦15,000.00 to your wallet on" in html
    assert "Paid at the office. You owe this bill again." in html
    assert 'id="paid"' not in html and 'id="pay"' in html and "badge-acknowledged" in html
    # Paid again from the page: the receipt of the new payment, and no refund line any more.
    pay = estate_url(estate, f"my-bills/{bill.pk}/pay/")
    key = re.search(r'name="idempotency_key" value="([^"]+)"', browser.get(pay).content.decode()).group(1)  # type: ignore[union-attr]
    assert browser.post(pay, {"idempotency_key": key}).status_code == 303
    html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/")).content.decode()
    second = Transaction.objects.get(bill=bill, payer=me.user, status="completed", settlement=1)
    assert 'id="paid"' in html and second.reference in html and first.reference not in html
    assert "You owe this bill again" not in html


def test_a_pay_form_without_its_key_moves_nothing(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "20000.00")
    bill = estate.wide_bill()
    bill_acknowledge(access=access(me), bill=bill)
    response = browser_as(me).post(estate_url(estate, f"my-bills/{bill.pk}/pay/"), {})
    assert response.status_code == 400 and "The payment form was incomplete." in response.content.decode()
    assert not _payments(me, bill)


def test_a_session_that_expired_before_paying_signs_in_again_and_returns_to_the_form(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    pay = estate_url(estate, f"my-bills/{bill.pk}/pay/")
    response = browser_as(None).post(pay, {"idempotency_key": new_key("web")})
    assert response.status_code == 302 and response["Location"] == f"/sign-in/?next={pay}"
    assert not _payments(me, bill)


def test_another_residents_bill_is_the_404_page(estate: Estate) -> None:
    theirs = estate.user_bill(estate.residents[1], title="Their gate remote")
    browser = browser_as(estate.residents[0])
    for page in ("", "pay/"):
        response = browser.get(estate_url(estate, f"my-bills/{theirs.pk}/{page}"))
        assert response.status_code == 404 and b"We can" in response.content
    assert browser.get(estate_url(estate, "my-bills/not-a-uuid/")).status_code == 404


@pytest.mark.parametrize("page", ["dashboard/", "bills/", "bills/new/"])
def test_a_resident_opening_a_manager_page_is_refused(estate: Estate, page: str) -> None:
    response = browser_as(estate.residents[0]).get(estate_url(estate, page))
    assert response.status_code == 403


# --- wallet --------------------------------------------------------------------------------------


def test_wallet_shows_balance_and_history_newest_first_a_page_at_a_time(estate: Estate) -> None:
    me = estate.residents[0]
    for n in range(26):
        estate.fund(me, f"{100 + n}.00")
    bill = estate.wide_bill(title="Service charge", amount=Decimal("1000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    bill_pay(access=access(me), bill=bill, idempotency_key=new_key("pay"))
    browser = browser_as(me)
    html = browser.get(estate_url(estate, "wallet/")).content.decode()
    balance = sum(Decimal(100 + n) for n in range(26)) - Decimal(1000)
    assert f'<p class="balance">₦{balance:,.2f}</p>' in html
    assert html.index("Bill payment: Service charge") < html.index("+₦125.00") < html.index("+₦124.00")
    assert html.count('class="tx tx-') == 25 and "+₦100.00" not in html
    cursor = re.search(r'href="\?after=([^"]+)" rel="next"', html).group(1)  # type: ignore[union-attr]
    rest = browser.get(estate_url(estate, "wallet/"), after=cursor).content.decode()
    assert rest.count('class="tx tx-') == 2 and "+₦100.00" in rest
    assert "does not take card payments here yet" in html


def test_top_up_goes_to_checkout_and_the_return_credits_the_wallet(estate: Estate, fake: Any) -> None:  # noqa: F811
    connect(estate, fake)
    me = estate.residents[0]
    browser = browser_as(me)
    html = browser.get(estate_url(estate, "wallet/"), amount="11000.00").content.decode()
    assert 'value="11000.00"' in html
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    bad = browser.post(estate_url(estate, "wallet/"), {"amount": "12,5", "idempotency_key": key})
    assert bad.status_code == 400 and "field-error" in bad.content.decode()
    answers = [browser.post(estate_url(estate, "wallet/"), {"amount": "11000", "idempotency_key": key}) for _ in "ab"]
    [top_up] = TopUp.objects.filter(user=me.user)
    ready = estate_url(estate, f"wallet/?top_up={top_up.pk}#top-up")
    assert {(a.status_code, a["Location"]) for a in answers} == {(303, ready)}
    html = browser.get(estate_url(estate, "wallet/"), top_up=str(top_up.pk)).content.decode()
    assert f'href="{top_up.checkout_url}">Pay ₦11,000.00 by card' in html
    # Another resident's top-up id shows them nothing.
    other = browser_as(estate.residents[1]).get(estate_url(estate, "wallet/"), top_up=str(top_up.pk))
    assert top_up.checkout_url not in other.content.decode()
    fake.pay(top_up.reference, send_webhook=False)
    back = browser.get(estate_url(estate, "wallet/top-up/return/"), reference=top_up.reference)
    assert back["Location"] == estate_url(estate, "wallet/")
    html = browser.get(estate_url(estate, "wallet/")).content.decode()
    assert "Your top-up of ₦11,000.00 is in your wallet." in html and '<p class="balance">₦11,000.00</p>' in html
    # The history names the entry a top-up by card, not a deposit the treasurer recorded.
    assert '<p class="tx-what">Top-up by card</p>' in html and '<p class="tx-what">Deposit' not in html
    # Someone else's reference is not theirs to look at.
    other = browser_as(estate.residents[1]).get(estate_url(estate, "wallet/top-up/return/"), reference=top_up.reference)
    assert other.status_code == 404


def test_pay_the_shortfall_by_card_and_the_bill_is_paid_on_return(estate: Estate, fake: Any) -> None:  # noqa: F811
    connect(estate, fake)
    me = estate.residents[0]
    estate.fund(me, "4000.00")
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    browser = browser_as(me)
    pay = estate_url(estate, f"my-bills/{bill.pk}/pay/")
    html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/")).content.decode()
    assert "Pay ₦11,000.00 by card" in html
    key = re.search(r'name="action" value="card"><input type="hidden" name="idempotency_key" value="([^"]+)"', html)
    assert key is not None
    answers = [browser.post(pay, {"action": "card", "idempotency_key": key.group(1)}) for _ in "ab"]
    [top_up] = TopUp.objects.filter(user=me.user)
    assert top_up.amount == Decimal("11000.00") and top_up.bill_id == bill.pk
    assert {(a.status_code, a["Location"]) for a in answers} == {(303, f"{pay}?top_up={top_up.pk}")}
    ready = browser.get(pay, top_up=str(top_up.pk)).content.decode()
    assert f'href="{top_up.checkout_url}">Pay ₦11,000.00 by card' in ready
    fake.pay(top_up.reference, send_webhook=False)
    back = browser.get(estate_url(estate, "wallet/top-up/return/"), reference=top_up.reference)
    assert back["Location"] == estate_url(estate, f"my-bills/{bill.pk}/#paid")
    html = browser.get(estate_url(estate, f"my-bills/{bill.pk}/")).content.decode()
    assert "arrived and the bill is paid" in html and "badge-paid" in html
    [payment] = _payments(me, bill)
    assert payment.status == TransactionStatus.COMPLETED
    assert Wallet.objects.get(cluster=estate.cluster, user=me.user).balance == Decimal("0.00")


# --- notifications --------------------------------------------------------------------------------


def _inbox(member: Any) -> list[Notification]:
    return list(Notification.objects.filter(recipient=member.user).order_by("-created_at"))


def test_a_notification_opens_its_bill_and_is_read(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(title="Service charge")
    [note] = _inbox(me)
    browser = browser_as(me)
    html = browser.get("/notifications/").content.decode()
    assert "Unread: </span>New bill: Service charge" in html and f'href="/notifications/{note.pk}/"' in html
    assert 'class="count">1<' in html
    response = browser.get(f"/notifications/{note.pk}/")
    assert response["Location"] == estate_url(estate, f"my-bills/{bill.pk}/")
    note.refresh_from_db()
    assert note.read_at is not None
    assert 'class="count"' not in browser.get("/notifications/").content.decode()


def test_each_notification_opens_the_part_of_the_page_it_is_about(estate: Estate) -> None:
    me = estate.residents[0]
    estate.fund(me, "50000.00")
    bill = estate.wide_bill(title="Service charge")
    disputed = estate.wide_bill(title="Generator diesel")
    with committed():  # the notifications are written when each action commits
        bill_acknowledge(access=access(me), bill=bill)
        bill_pay(access=access(me), bill=bill, idempotency_key=new_key("pay"))
        dispute = bill_dispute(access=access(me), bill=disputed, reason="We were away")
        dispute_resolve(access=access(estate.admin), dispute=dispute, resolution="rejected", note="Ran all month")

    def opened(member: Any, event: str) -> str:
        note = Notification.objects.get(recipient=member.user, event=event)
        return str(browser_as(member).get(f"/notifications/{note.pk}/")["Location"])

    assert opened(me, "PAYMENT_SUCCESSFUL") == estate_url(estate, f"my-bills/{bill.pk}/#paid")
    assert opened(me, "DISPUTE_RESOLVED") == estate_url(estate, f"my-bills/{disputed.pk}/#dispute")
    assert opened(estate.admin, "BILL_DISPUTED") == estate_url(estate, f"disputes/{dispute.pk}/")
    assert opened(estate.admin, "BILL_ACKNOWLEDGED") == estate_url(estate, f"bills/{bill.pk}/")


def test_the_inbox_shows_the_header_of_the_estate_used_last(estate: Estate) -> None:
    browser = browser_as(estate.residents[0])
    assert ">My bills<" not in browser.get("/notifications/").content.decode()  # no estate used yet
    browser.get(estate_url(estate, "my-bills/"))
    html = browser.get("/notifications/").content.decode()
    assert f'href="{estate_url(estate, "my-bills/")}">My bills<' in html and estate.cluster.name in html


def test_an_email_link_signs_in_first_then_opens_the_bill(estate: Estate) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill(title="Service charge")
    [note] = _inbox(me)
    from levy.notifications.channels import open_url

    link = open_url(note)
    assert link.endswith(f"/notifications/{note.pk}/")
    anonymous = browser_as(None)
    response = anonymous.get(f"/notifications/{note.pk}/")
    assert response["Location"] == f"/sign-in/?next=/notifications/{note.pk}/"
    from tests.factories import TEST_PASSWORD

    signed = anonymous.post(
        "/sign-in/", {"username": me.user.email, "password": TEST_PASSWORD, "next": f"/notifications/{note.pk}/"}
    )
    assert signed["Location"] == f"/notifications/{note.pk}/"
    assert anonymous.get(signed["Location"])["Location"] == estate_url(estate, f"my-bills/{bill.pk}/")


def test_mark_one_read_and_read_all(estate: Estate) -> None:
    me = estate.residents[0]
    for n in range(3):
        estate.wide_bill(title=f"Bill {n}")
    first, *_ = _inbox(me)
    browser = browser_as(me)
    assert browser.post(f"/notifications/{first.pk}/").status_code == 302
    assert [n.read_at is not None for n in _inbox(me)] == [True, False, False]
    assert browser.post("/notifications/").status_code == 302
    assert all(n.read_at is not None for n in _inbox(me))
    assert "Marked 2 notifications read." in browser.get("/notifications/").content.decode()


def test_another_persons_notification_is_the_404_page(estate: Estate) -> None:
    estate.wide_bill()
    [theirs] = _inbox(estate.residents[1])
    browser = browser_as(estate.residents[0])
    assert browser.get(f"/notifications/{theirs.pk}/").status_code == 404
    assert browser.post(f"/notifications/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None


# --- queries -------------------------------------------------------------------------------------


def _queries(member: Any, path: str, **params: str) -> int:
    browser = browser_as(member)
    browser.get(path, **params)
    n, response = count_queries(lambda: browser.client.get(path, params))
    assert response.status_code == 200, response.status_code
    return n


def _resident_with(bills: int) -> tuple[Estate, Any, Any]:
    estate = make_estate(residents=2)
    me = estate.residents[0]
    estate.fund(me, "1000000.00")
    bill = None
    for n in range(bills):
        bill = estate.wide_bill(title=f"Bill {n}", amount=Decimal("100.00"))
        if n % 3 == 0:
            bill_acknowledge(access=access(me), bill=bill)
            bill_pay(access=access(me), bill=bill, idempotency_key=new_key("pay"))
        elif n % 3 == 1:
            bill_dispute(access=access(me), bill=bill, reason="No")
    return estate, me, bill


EXPECTED = {"my-bills": 5, "my-bill": 8, "my-bill-pay": 7, "wallet": 7, "notifications": 5}


@pytest.mark.parametrize("page", list(EXPECTED))
def test_each_resident_page_costs_the_same_queries_whatever_the_size(page: str) -> None:
    counts = []
    for bills in (3, 30):
        estate, me, bill = _resident_with(bills)
        bill_acknowledge(access=access(me), bill=bill)
        path = {
            "my-bills": estate_url(estate, "my-bills/"),
            "my-bill": estate_url(estate, f"my-bills/{bill.pk}/"),
            "my-bill-pay": estate_url(estate, f"my-bills/{bill.pk}/pay/"),
            "wallet": estate_url(estate, "wallet/"),
            "notifications": "/notifications/",
        }[page]
        counts.append(_queries(me, path))
    assert counts == [EXPECTED[page]] * 2, counts


def test_the_bill_links_of_a_list_are_the_reversed_addresses(estate: Estate) -> None:
    """My bills builds each bill's addresses from its own, reversed once (``BillLinks``):
    they must be what ``reverse`` gives."""
    bill = estate.wide_bill(title="Water")
    links = BillLinks.of(estate.cluster.pk)
    kwargs = {"cluster_id": estate.cluster.pk, "bill_id": bill.pk}
    assert links.bill(bill) == reverse("web:my-bill", kwargs=kwargs)
    assert links.bill(bill, "#pay") == reverse("web:my-bill", kwargs=kwargs) + "#pay"
    assert links.pay(bill) == reverse("web:my-bill-pay", kwargs=kwargs)
