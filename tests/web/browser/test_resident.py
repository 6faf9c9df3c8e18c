"""The resident's pages in a real browser, at a phone's size (390 x 844) with touch:
open a notification, acknowledge and pay the bill; dispute and see payment refused
with the reason; too little in the wallet shows the shortfall, top up through the
(fake) provider and pay; a double tap and the back button move money once (checked in
the ledger); another resident's bill is the 404 page and a manager's page is refused.
The weight of a first visit to My bills is measured and printed."""

from __future__ import annotations

import gzip
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import expect

from levy.billing.models import BillAcknowledgement, BillDispute
from levy.billing.services import bill_acknowledge
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from tests.conftest import Estate, access, make_estate
from tests.factories import TEST_PASSWORD
from tests.payments.conftest import connect, fake  # noqa: F401 - the fixture
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# The target for a first visit to My bills over the network, everything included.
WEIGHT_LIMIT = 100 * 1024


def _context(chromium: Any, **options: Any) -> Any:
    return chromium.new_context(viewport=PHONE, has_touch=True, is_mobile=True, **options)


def _watch(tab: Any) -> list[str]:
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.set_default_timeout(10_000)
    return problems


@pytest.fixture
def phone(chromium: Any, live: Callable[[str], str]) -> Iterator[Any]:
    context = _context(chromium)
    tab = context.new_page()
    problems = _watch(tab)
    yield tab
    context.close()
    assert not problems, f"script errors or CSP violations in the browser: {problems}"


def _estate(balance: str = "20000.00") -> tuple[Estate, Any]:
    estate = make_estate(residents=2)
    me = estate.residents[0]
    if Decimal(balance):
        estate.fund(me, balance)
    return estate, me


def _my(estate: Estate, path: str = "") -> str:
    return f"/estates/{estate.cluster.pk}/my-bills/{path}"


def _payments(me: Any) -> list[Transaction]:
    return list(Transaction.objects.filter(payer=me.user, type=TransactionType.BILL_PAYMENT).order_by("created_at"))


def _balance(estate: Estate, me: Any) -> Decimal:
    return Wallet.objects.get(cluster=estate.cluster, user=me.user).balance


def test_open_a_notification_then_acknowledge_and_pay_the_bill(phone: Any, live: Callable[[str], str]) -> None:
    estate, me = _estate("20000.00")
    bill = estate.wide_bill(title="Service charge December", amount=Decimal("15000.00"))
    sign_in(phone, live, me.user)
    assert phone.url == live(_my(estate))  # residents land on My bills
    assert phone.get_by_role("link", name=re.compile(r"^Read and acknowledge.*Service charge December")).is_visible()
    shoot(phone, "my-bills")
    phone.get_by_role("link", name=re.compile(r"^Notifications 1")).tap()
    shoot(phone, "notifications")
    phone.get_by_role("link", name=re.compile("New bill: Service charge December")).tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/")))
    shoot(phone, "my-bill")
    phone.get_by_role("button", name="Acknowledge this bill").tap()
    phone.get_by_text("Acknowledged. You can now pay it").wait_for()
    ack = BillAcknowledgement.objects.get(bill=bill, user=me.user)
    assert ack.ip_address == "127.0.0.1" and "Chrome" in ack.user_agent
    phone.get_by_role("link", name="Pay ₦15,000.00").tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/pay/")))
    confirm = phone.locator(".confirm").inner_text()
    assert "₦20,000.00" in confirm and "₦5,000.00" in confirm, confirm
    shoot(phone, "my-bill-pay")
    phone.get_by_role("button", name="Pay ₦15,000.00 now").tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/#paid")))
    [payment] = _payments(me)
    assert payment.status == TransactionStatus.COMPLETED and _balance(estate, me) == Decimal("5000.00")
    paid = phone.locator("#paid").inner_text()
    assert payment.reference in paid and "₦15,000.00" in paid
    assert phone.get_by_role("link", name="Download the receipt (PDF)").is_visible()
    shoot(phone, "my-bill-paid")
    phone.get_by_role("link", name="My bills", exact=True).first.tap()
    phone.wait_for_url(live(_my(estate)))
    settled = phone.locator("#settled-heading + .bill-list .bill-item")
    assert settled.count() == 1 and "Service charge December" in settled.inner_text()


def test_dispute_a_bill_and_see_payment_refused_with_the_reason(phone: Any, live: Callable[[str], str]) -> None:
    estate, me = _estate("50000.00")
    bill = estate.wide_bill(title="Generator diesel", amount=Decimal("8000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    sign_in(phone, live, me.user)
    phone.goto(live(_my(estate, f"{bill.pk}/")))
    phone.get_by_text("Is this bill wrong? Dispute it").tap()
    phone.get_by_role("button", name="Send the dispute").tap()
    phone.get_by_text("This field is required.").wait_for()  # no reason: said next to the field
    phone.get_by_label("Why is this bill wrong?").fill("The generator was off for most of the month.")
    phone.get_by_role("button", name="Send the dispute").tap()
    phone.get_by_text("Dispute sent.").wait_for()
    assert BillDispute.objects.get(bill=bill, user=me.user).status == "open"
    pay = phone.locator("#pay")
    assert "You have an open dispute on this bill." in pay.inner_text()
    assert "once the estate answers your dispute" in pay.inner_text()
    assert pay.get_by_role("button", name="Pay ₦8,000.00").is_disabled()
    assert "Open — waiting for the estate" in phone.locator("#dispute").inner_text()
    shoot(phone, "my-bill-disputed")
    # The pay page, opened by its address, refuses too, without a form.
    phone.goto(live(_my(estate, f"{bill.pk}/pay/")))
    assert "You have an open dispute on this bill." in phone.locator("main").inner_text()
    assert phone.locator("form.pay-form").count() == 0
    phone.goto(live(_my(estate)))
    assert "Generator diesel" in phone.locator("section", has=phone.locator("#disputed-heading")).inner_text()
    assert not _payments(me)


def test_too_little_in_the_wallet_shows_the_shortfall_then_top_up_and_pay(
    phone: Any,
    live: Callable[[str], str],
    fake: Any,  # noqa: F811
    settings: Any,
) -> None:
    settings.LEVY_PUBLIC_URL = live("/")  # the provider sends the resident back here
    estate, me = _estate("4000.00")
    connect(estate, fake)
    bill = estate.wide_bill(title="Security levy", amount=Decimal("15000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    sign_in(phone, live, me.user)
    phone.goto(live(_my(estate, f"{bill.pk}/pay/")))
    assert "It holds ₦4,000.00; this bill is ₦15,000.00." in phone.locator("main").inner_text()
    assert phone.locator(".shortfall").inner_text() == "₦11,000.00"
    assert phone.locator("form.pay-form").count() == 0
    assert phone.get_by_role("button", name="Pay ₦11,000.00 by card").is_visible()  # or the shortfall by card
    shoot(phone, "my-bill-shortfall")
    phone.get_by_role("link", name="Top up your wallet").tap()
    phone.get_by_label("Amount to add").fill("11000")
    shoot(phone, "wallet-top-up")
    phone.get_by_role("button", name="Continue to payment").tap()
    phone.get_by_role("link", name="Pay ₦11,000.00 by card").tap()
    phone.get_by_role("button", name="Pay").tap()  # the provider's (fake) checkout page
    phone.get_by_text("Your top-up of ₦11,000.00 is in your wallet.").wait_for()
    assert phone.url == live(f"/estates/{estate.cluster.pk}/wallet/")
    assert phone.locator(".balance").inner_text() == "₦15,000.00"
    shoot(phone, "wallet")
    phone.goto(live(_my(estate, f"{bill.pk}/pay/")))
    assert "Your wallet after" in phone.locator(".confirm").inner_text()
    phone.get_by_role("button", name="Pay ₦15,000.00 now").tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/#paid")))
    assert [p.status for p in _payments(me)] == [TransactionStatus.COMPLETED]
    assert _balance(estate, me) == Decimal("0.00")


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_a_double_tap_on_pay_moves_money_once(chromium: Any, live: Callable[[str], str], javascript: bool) -> None:
    estate, me = _estate("20000.00")
    bill = estate.wide_bill(title="Water", amount=Decimal("6000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    context = _context(chromium, java_script_enabled=javascript)
    tab = context.new_page()
    problems = _watch(tab)
    sign_in(tab, live, me.user)
    tab.goto(live(_my(estate, f"{bill.pk}/pay/")))
    posts: list[str] = []
    tab.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    form = {
        "csrfmiddlewaretoken": tab.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value"),
        "idempotency_key": tab.locator("input[name=idempotency_key]").get_attribute("value"),
    }
    tab.get_by_role("button", name="Pay ₦6,000.00 now").dblclick()
    tab.wait_for_url(live(_my(estate, f"{bill.pk}/#paid")))
    tab.wait_for_load_state("networkidle")
    assert "Paid" in tab.locator("#paid").inner_text()
    # The same form once more, as a resubmit after a slow answer sends it (same session).
    again = tab.request.post(live(_my(estate, f"{bill.pk}/pay/")), form=form, max_redirects=0)
    assert again.status == 303 and again.headers["location"] == _my(estate, f"{bill.pk}/#paid")
    context.close()
    assert not problems
    assert 1 <= len(posts) <= 2, posts
    [payment] = _payments(me)
    assert payment.status == TransactionStatus.COMPLETED
    assert _balance(estate, me) == Decimal("14000.00")


def test_the_back_button_after_paying_moves_no_more_money(phone: Any, live: Callable[[str], str]) -> None:
    estate, me = _estate("20000.00")
    bill = estate.wide_bill(title="Refuse collection", amount=Decimal("3000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    sign_in(phone, live, me.user)
    phone.goto(live(_my(estate, f"{bill.pk}/")))
    phone.get_by_role("link", name="Pay ₦3,000.00").tap()
    phone.get_by_role("button", name="Pay ₦3,000.00 now").tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/#paid")))
    phone.go_back()
    assert phone.url == live(_my(estate, f"{bill.pk}/pay/"))
    main = phone.locator("main").inner_text()
    assert "Already paid" in main and phone.locator("form.pay-form").count() == 0, main
    shoot(phone, "my-bill-pay-after-back")
    phone.reload()
    phone.go_back()
    phone.go_forward()
    assert len(_payments(me)) == 1 and _balance(estate, me) == Decimal("17000.00")


def test_another_residents_bill_is_the_404_page_and_a_manager_page_is_refused(
    phone: Any, live: Callable[[str], str]
) -> None:
    estate, me = _estate("0")
    theirs = estate.user_bill(estate.residents[1], title="Their gate remote")
    sign_in(phone, live, me.user)
    response = phone.goto(live(_my(estate, f"{theirs.pk}/")))
    assert response.status == 404
    expect(phone.get_by_role("heading", name="We can't find that page")).to_be_visible()
    assert "Their gate remote" not in phone.content()
    shoot(phone, "my-bill-not-found")
    for page in ("dashboard/", "bills/", f"bills/{theirs.pk}/"):
        response = phone.goto(live(f"/estates/{estate.cluster.pk}/{page}"))
        assert response.status == 403, page
        assert phone.get_by_role("heading", name="Your role can't open this page").is_visible()
    assert "Their gate remote" not in phone.content()


def test_wallet_and_inbox_screens(phone: Any, live: Callable[[str], str]) -> None:
    estate, me = _estate("20000.00")
    paid = estate.wide_bill(title="Service charge November", amount=Decimal("15000.00"))
    bill_acknowledge(access=access(me), bill=paid)
    from levy.billing.payments import bill_pay
    from tests.conftest import committed, new_key

    with committed():
        bill_pay(access=access(me), bill=paid, idempotency_key=new_key("pay"))
    estate.wide_bill(title="Security levy December", amount=Decimal("5000.00"))
    sign_in(phone, live, me.user)
    phone.get_by_role("link", name="Wallet", exact=True).tap()
    phone.wait_for_url(live(f"/estates/{estate.cluster.pk}/wallet/"))
    history = phone.locator(".ledger").inner_text()
    assert history.index("Bill payment: Service charge November") < history.index("Deposit")
    shoot(phone, "wallet-history")
    phone.goto(live("/notifications/"))
    assert phone.locator(".inbox-list li.unread").count() == 3
    phone.get_by_role("button", name=re.compile(r"Mark read.*Receipt: Service charge November")).tap()
    expect(phone.locator(".inbox-list li.unread")).to_have_count(2)
    expect(phone.locator(".site-header .count")).to_have_text("2 unread")
    phone.get_by_role("button", name="Mark all read").tap()
    expect(phone.locator(".inbox-list li.unread")).to_have_count(0)
    expect(phone.locator(".site-header .count")).to_have_count(0)
    shoot(phone, "notifications-read")


def test_weight_of_a_first_visit_to_my_bills(chromium: Any, live: Callable[[str], str], capsys: Any) -> None:
    """Everything a phone downloads to show My bills with an empty cache (already signed
    in): the page, its stylesheet, scripts and icon, headers included, each body
    compressed as it is served in production (gzip; Brotli is smaller still)."""
    estate, me = _estate("20000.00")
    for n in range(6):
        estate.wide_bill(title=f"Estate levy {n}", amount=Decimal("2500.00"))
    signed = _context(chromium)
    sign_in(signed.new_page(), live, me.user)
    state = signed.storage_state()
    signed.close()
    context = _context(chromium, storage_state=state)  # a fresh cache, the same session
    tab = context.new_page()
    responses: list[Any] = []
    tab.on("response", lambda response: responses.append(response))
    tab.goto(live(_my(estate)), wait_until="networkidle")
    rows = []
    for response in responses:
        body = response.body()
        sizes = response.request.sizes()
        kind = (response.headers.get("content-type") or "").split(";")[0]
        textual = kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml")
        compressed = len(gzip.compress(body, 9)) if textual else len(body)
        rows.append((response.url.replace(live(""), ""), kind, len(body), compressed, sizes["responseHeadersSize"]))
    context.close()
    total = sum(compressed + headers for _, _, _, compressed, headers in rows)
    raw = sum(size + headers for _, _, size, _, headers in rows)
    with capsys.disabled():
        print(
            f"\nFirst visit to My bills: {len(rows)} requests, "
            f"{total / 1024:.1f} KB compressed ({raw / 1024:.1f} KB uncompressed)"
        )
        for url, kind, size, compressed, headers in rows:
            print(f"  {url[:70]:70} {kind:24} {size:7} B raw  {compressed:6} B gzip  {headers:5} B headers")
    assert any("/my-bills/" in url for url, *_ in rows)
    assert total <= WEIGHT_LIMIT, f"{total} bytes"


def test_two_submissions_of_one_form_at_the_same_instant_pay_once(phone: Any, live: Callable[[str], str]) -> None:
    """The same pay form posted twice at once (a double tap whose two requests race on
    the server): one debit in the ledger, and both answers lead to the paid bill."""
    estate, me = _estate("20000.00")
    bill = estate.wide_bill(title="Estate levy", amount=Decimal("9000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    sign_in(phone, live, me.user)
    phone.goto(live(_my(estate, f"{bill.pk}/pay/")))
    body = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": phone.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value"),
            "idempotency_key": phone.locator("input[name=idempotency_key]").get_attribute("value"),
        }
    ).encode()
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in phone.context.cookies())
    url = live(_my(estate, f"{bill.pk}/pay/"))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    start = threading.Barrier(2)

    def submit() -> tuple[int, str]:
        request = urllib.request.Request(url, data=body, headers={"Cookie": cookies, "Referer": url})  # noqa: S310 - the live server
        start.wait()
        try:
            opener.open(request, timeout=20)
        except urllib.error.HTTPError as answer:
            return answer.code, answer.headers.get("Location", "")
        return 200, ""

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: submit(), range(2)))
    assert answers == [(303, _my(estate, f"{bill.pk}/#paid"))] * 2, answers
    [payment] = _payments(me)
    assert payment.status == TransactionStatus.COMPLETED and _balance(estate, me) == Decimal("11000.00")


def test_a_session_that_expired_before_paying_signs_in_again_and_pays_once(
    phone: Any, live: Callable[[str], str]
) -> None:
    estate, me = _estate("20000.00")
    bill = estate.wide_bill(title="Estate levy", amount=Decimal("4000.00"))
    bill_acknowledge(access=access(me), bill=bill)
    sign_in(phone, live, me.user)
    phone.goto(live(_my(estate, f"{bill.pk}/pay/")))
    # The session ends while the confirmation is on screen.
    kept = [c for c in phone.context.cookies() if c["name"] != "sessionid"]
    phone.context.clear_cookies()
    phone.context.add_cookies(kept)
    phone.get_by_role("button", name="Pay ₦4,000.00 now").tap()
    phone.wait_for_url(re.compile(r"/sign-in/\?next="))
    assert not _payments(me)
    phone.get_by_label("Email").fill(me.user.email)
    phone.get_by_label("Password").fill(TEST_PASSWORD)
    phone.get_by_role("button", name="Sign in").tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/pay/")))  # back on the confirmation
    phone.get_by_role("button", name="Pay ₦4,000.00 now").tap()
    phone.wait_for_url(live(_my(estate, f"{bill.pk}/#paid")))
    assert len(_payments(me)) == 1 and _balance(estate, me) == Decimal("16000.00")
