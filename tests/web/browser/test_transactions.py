"""The transactions page in a real browser: filter the ledger, open a payment of a
cancelled bill and refund it: the form sent twice at once, then double-clicked — one
refund, and every answer is that refund. A payment of a live bill is refunded too, and
the form says the payer will owe the bill again."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.billing.status import BillStatus
from levy.wallets.models import Transaction, TransactionType, Wallet
from tests.conftest import access, make_estate, new_key
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def test_refund_a_payment_once_however_often_the_form_is_sent(page, live) -> None:
    estate = make_estate(residents=3)
    payer = estate.residents[1]
    light = estate.wide_bill(title="Broken streetlight", amount=Decimal("5000.00"))
    water = estate.wide_bill(title="Water", amount=Decimal("3000.00"))
    for member in estate.residents:
        estate.fund(member, "20000.00")
    for bill in (light, water):
        bill_acknowledge(access=access(payer), bill=bill)
        bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
    bill_cancel(access=access(estate.admin), bill=light, reason="Covered by the power company")
    balance = Wallet.objects.get(cluster=estate.cluster, user=payer.user).balance
    sign_in(page, live, estate.treasurer.user)
    page.get_by_role("navigation", name="Estate").get_by_role("link", name="Transactions").click()
    page.get_by_text("Filters").click()
    page.get_by_label("Type").select_option("bill_payment")
    page.get_by_label("Member name or email").fill(payer.user.email)
    page.get_by_role("button", name="Show transactions").click()
    page.wait_for_load_state("networkidle")
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    shoot(page, "transactions")
    rows.filter(has_text="Broken streetlight").get_by_role("link").first.click()
    assert page.get_by_role("heading", name="Refund to the wallet").is_visible()
    page.get_by_label("Reason").fill("The streetlight bill was cancelled")
    shoot(page, "transaction-refund")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    # Chromium folds a quick double click into one submission; a slow answer clicked
    # again, or two tabs, send the same form twice at once: send it twice together first,
    # as the page's own form data, then click as a person does — the same key each time.
    statuses = page.evaluate(
        """async () => {
            const form = document.querySelector('main form[method=post]');
            const send = () => fetch(form.action, {method: 'POST', body: new FormData(form), redirect: 'manual'});
            const answers = await Promise.all([send(), send()]);
            return answers.map(a => a.type);
        }"""
    )
    assert statuses == ["opaqueredirect", "opaqueredirect"], statuses  # both answered with a redirect
    page.get_by_role("button", name="Refund").dblclick()
    page.get_by_role("heading", level=1, name=re.compile(r"^Refund of ₦5,000\.00")).wait_for()
    page.wait_for_load_state("networkidle")
    payment = Transaction.objects.get(bill=light, type=TransactionType.BILL_PAYMENT)
    refunds = list(Transaction.objects.filter(reverses=payment))
    assert len(posts) >= 3, posts  # the form was sent three times or more
    assert len(refunds) == 1 and refunds[0].note == "The streetlight bill was cancelled"
    assert Wallet.objects.get(cluster=estate.cluster, user=payer.user).balance == balance + Decimal("5000.00")
    assert page.url.endswith(f"/transactions/{refunds[0].pk}/")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Refund of ₦5,000.00")
    shoot(page, "transaction")
    # Back to the payment: refunded once, nothing to do.
    page.go_back()
    page.reload()
    assert page.get_by_role("heading", name="Refund to the wallet").count() == 0
    assert refunds[0].reference in page.content()


def test_refund_a_payment_of_a_live_bill_and_the_payer_owes_it_again(page, live) -> None:
    estate = make_estate(residents=2)
    payer = estate.residents[0]
    bill = estate.wide_bill(title="Estate security levy", amount=Decimal("15000.00"))
    estate.fund(payer, "20000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    payment = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/transactions/{payment.pk}/"))
    form = page.get_by_role("region", name="Refund to the wallet")
    assert form.is_visible()
    assert "owes it again and can pay it again" in form.inner_text()
    page.get_by_label("Reason").fill("Paid in cash at the office")
    shoot(page, "transaction-refund-live")
    page.get_by_role("button", name="Refund").click()
    page.get_by_role("heading", level=1, name=re.compile(r"^Refund of ₦15,000\.00")).wait_for()
    assert "owes it again</dd>" in page.content()
    refund = Transaction.objects.get(reverses=payment)
    assert refund.reopens_bill and page.url.endswith(f"/transactions/{refund.pk}/")
    assert bill.status_for(payer.user) == BillStatus.ACKNOWLEDGED
    # The payer, on the bill's page: why it is owed again, and the way to pay it.
    page.context.clear_cookies()
    sign_in(page, live, payer.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/my-bills/{bill.pk}/"))
    assert "You owe this bill again." in page.get_by_text("The estate refunded your payment").inner_text()
    assert page.get_by_role("heading", name="Pay").is_visible()
    shoot(page, "resident-bill-refunded")
