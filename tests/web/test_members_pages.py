"""The member pages over HTTP: the list with its filters and each member's bills at a
glance, the hover card (a fragment of the list, same checks), one member's page (bills,
wallet, ledger, disputes), record money received once per form, change a role,
deactivate; who may do what, and the queries each page costs."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from levy.audit.models import AuditEvent
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.wallets.models import Transaction, TransactionType
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, committed, make_estate, new_key
from tests.payments.conftest import connect, fake, get_return, start  # noqa: F401 - the fixture
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _pay(estate: Estate, bill: Bill, member: Membership) -> None:
    estate.fund(member, "20000.00")
    bill_acknowledge(access=access(member), bill=bill)
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))


def _overdue_bill(estate: Estate, member: Membership, **overrides: object) -> Bill:
    """A bill of ``member``'s that fell due yesterday (written past the service's
    "not in the past" rule, as time would)."""
    bill = estate.user_bill(member, **overrides)
    Bill.objects.filter(pk=bill.pk).update(due_date=estate_today() - datetime.timedelta(days=1))
    return bill


def _figures(estate: Estate) -> dict[str, object]:
    """Resident 0 paid the estate levy and owes an overdue bill of their own; resident 1
    disputes the levy; resident 2 acknowledged it."""
    levy = estate.wide_bill(title="Estate levy", amount=Decimal("15000.00"))
    payer, disputer, acknowledger = estate.residents
    _pay(estate, levy, payer)
    _overdue_bill(estate, payer, title="Gate remote", amount=Decimal("2500.00"))
    bill_dispute(access=access(disputer), bill=levy, reason="I moved out in November")
    bill_acknowledge(access=access(acknowledger), bill=levy)
    return {"levy": levy}


def _row(html: str, name: str) -> str:
    rows = re.findall(r"<tr class=\"member-row.*?</tr>", html, flags=re.S)
    found = [r for r in rows if name in r]
    assert len(found) == 1, (name, len(found))
    return found[0]


def test_the_list_shows_each_members_bills_at_a_glance(estate: Estate) -> None:
    _figures(estate)
    payer, disputer, acknowledger = estate.residents
    html = browser_as(estate.auditor).get(estate_url(estate, "members/")).content.decode()
    row = _row(html, payer.user.name)
    assert "₦2,500.00" in row and "1 overdue" in row and "1 to pay" in row
    row = _row(html, disputer.user.name)
    assert "₦15,000.00" in row and "1 disputed" in row
    assert "₦15,000.00" in _row(html, acknowledger.user.name)
    assert "Not billed" in _row(html, estate.treasurer.user.name)
    # The card of each row is fetched from this page, by htmx, when needed.
    assert f'hx-get="/estates/{estate.cluster.pk}/members/?card={payer.user_id}"' in html
    assert "Add a member" not in html  # an auditor adds nobody


@pytest.mark.parametrize(
    ("query", "shown", "hidden", "former_shown"),
    [
        ({"has_overdue": "on"}, [0], [1, 2], False),
        ({"has_disputed": "on"}, [1], [0, 2], False),
        ({"role": "resident"}, [0, 1, 2], [], True),
        ({"status": "deactivated"}, [], [0, 1, 2], True),
        ({"status": "active"}, [0, 1, 2], [], False),
    ],
)
def test_filters_live_in_the_url(
    estate: Estate, query: dict[str, str], shown: list[int], hidden: list[int], former_shown: bool
) -> None:
    _figures(estate)
    gone = estate.add(role=Role.RESIDENT)
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    html = browser_as(estate.admin).get(estate_url(estate, "members/"), **query).content.decode()
    for i in shown:
        assert estate.residents[i].user.email in html, (query, i)
    for i in hidden:
        assert estate.residents[i].user.email not in html, (query, i)
    assert (gone.user.email in html) is former_shown
    if query.get("role") == "resident":
        assert estate.treasurer.user.email not in html


def test_the_members_csv_has_the_lists_filters_and_every_page() -> None:
    from tests.web.test_list_exports import _download

    estate = make_estate(residents=30)
    _overdue_bill(estate, estate.residents[3], title="Gate remote", amount=Decimal("2500.00"))
    browser = browser_as(estate.auditor)
    page = browser.get(estate_url(estate, "members/"), has_overdue="on").content.decode()
    rows = _download(browser, page, "members/export.csv")
    assert [(r["email"], r["overdue_count"], r["outstanding_amount"]) for r in rows] == [
        (estate.residents[3].user.email, "1", "2500.00")
    ]
    every = _download(browser, browser.get(estate_url(estate, "members/")).content.decode(), "members/export.csv")
    assert len(every) == 33  # more than the page's 25


def test_search_by_name_or_email(estate: Estate) -> None:
    target = estate.residents[1]
    browser = browser_as(estate.treasurer)
    by_name = browser.get(estate_url(estate, "members/"), search=target.user.name.upper()).content.decode()
    assert target.user.email in by_name and estate.residents[0].user.email not in by_name
    by_email = browser.get(estate_url(estate, "members/"), search=target.user.email.split("@")[0]).content.decode()
    assert target.user.email in by_email and estate.residents[2].user.email not in by_email
    nothing = browser.get(estate_url(estate, "members/"), search="zzz-nobody").content.decode()
    assert "No member matches these filters." in nothing


def test_the_list_pages_by_cursor() -> None:
    estate = make_estate(residents=30)
    browser = browser_as(estate.admin)
    first = browser.get(estate_url(estate, "members/")).content.decode()
    assert first.count('class="member-row') == 25
    cursor = first.split("?after=")[1].split('"')[0]
    second = browser.get(estate_url(estate, "members/"), after=cursor).content.decode()
    assert second.count('class="member-row') == 30 + 3 - 25
    emails = set(re.findall(r"person\d+@example.test", first)) & set(re.findall(r"person\d+@example.test", second))
    assert not emails
    assert browser.get(estate_url(estate, "members/"), after="garbage").status_code == 200


def test_the_hover_card_has_the_members_figures(estate: Estate) -> None:
    _figures(estate)
    payer = estate.residents[0]
    response = browser_as(estate.auditor).get(estate_url(estate, "members/"), card=str(payer.user_id), headers=HX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Outstanding ₦2,500.00 ( 1 bill )" in text.replace("(1 bill)", "( 1 bill )")
    assert "Overdue 1" in text and "Not acknowledged 1" in text and "Disputed 0" in text and "Paid 1" in text
    assert "Last payment: ₦15,000.00 for Estate levy" in text
    disputer = estate.residents[1]
    text = (
        browser_as(estate.auditor)
        .get(estate_url(estate, "members/"), card=str(disputer.user_id), headers=HX)
        .content.decode()
    )
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    assert "Disputed 1" in text and "Overdue 0" in text and "Paid 0" in text and "Last payment: none yet" in text


def test_the_card_of_another_estates_member_is_the_404_page(estate: Estate, other_estate: Estate) -> None:
    outsider = other_estate.residents[0]
    before = db_snapshot()
    for card in (str(outsider.user_id), "not-an-id"):
        response = browser_as(estate.admin).get(estate_url(estate, "members/"), card=card, headers=HX)
        assert response.status_code == 404 and b"We can" in response.content
    # And the card is behind the page's own checks: a resident gets the 403 page.
    response = browser_as(estate.residents[0]).get(
        estate_url(estate, "members/"), card=str(estate.residents[1].user_id), headers=HX
    )
    assert response.status_code == 403
    assert db_snapshot() == before


def test_the_member_page_shows_bills_wallet_ledger_and_disputes(estate: Estate) -> None:
    figures = _figures(estate)
    payer, disputer, _ = estate.residents
    html = browser_as(estate.auditor).get(estate_url(estate, f"members/{payer.user_id}/")).content.decode()
    assert "Estate levy" in html and "Gate remote" in html
    assert 'badge-paid">Paid' in html and 'badge-overdue">Overdue' in html
    assert '<p class="balance">₦5,000.00</p>' in html  # 20,000 received, 15,000 paid
    assert "+₦20,000.00" in html and "\N{MINUS SIGN}₦15,000.00" in html
    # An auditor sees no control that writes.
    assert "Record money received" not in html and "Change the role" not in html and "Deactivate" not in html
    html = browser_as(estate.admin).get(estate_url(estate, f"members/{disputer.user_id}/")).content.decode()
    assert "I moved out in November" in html and 'badge-disputed">' in html
    assert f"/bills/{figures['levy'].pk}/" in html  # type: ignore[attr-defined]
    assert "Record money received" in html and "Change the role" in html and "Deactivate this member" in html


def _credit_form(browser: object, estate: Estate, member: Membership) -> dict[str, str]:
    html = browser.get(estate_url(estate, f"members/{member.user_id}/")).content.decode()  # type: ignore[attr-defined]
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert key, "the form carries its idempotency key"
    return {"action": "credit", "amount": "12500.50", "note": "Bank transfer 0042", "idempotency_key": key.group(1)}


def test_money_received_is_recorded_once_per_form(estate: Estate) -> None:
    member = estate.residents[0]
    browser = browser_as(estate.treasurer)
    form = _credit_form(browser, estate, member)
    first = browser.post(estate_url(estate, f"members/{member.user_id}/"), form)
    again = browser.post(estate_url(estate, f"members/{member.user_id}/"), form)  # double click, back button
    assert first.status_code == again.status_code == 302
    credits = Transaction.objects.filter(payer=member.user, type=TransactionType.DEPOSIT)
    assert credits.count() == 1
    tx = credits.get()
    assert (tx.amount, tx.note, tx.initiated_by_id) == (
        Decimal("12500.50"),
        "Bank transfer 0042",
        estate.treasurer.user_id,
    )
    assert AuditEvent.objects.filter(action="wallet.credit", cluster=estate.cluster).count() == 1
    page = browser.get(first["Location"]).content.decode()
    assert f"Recorded ₦12,500.50 received for {member.user.name} (ledger reference {tx.reference})" in page
    assert '<p class="balance">₦12,500.50</p>' in page
    # A fresh form is a new credit.
    browser.post(estate_url(estate, f"members/{member.user_id}/"), _credit_form(browser, estate, member))
    assert credits.count() == 2


def test_bad_amounts_are_explained_and_nothing_moves(estate: Estate) -> None:
    member = estate.residents[0]
    browser = browser_as(estate.admin)
    form = _credit_form(browser, estate, member)
    before = db_snapshot()
    for amount in ("", "abc", "-5", "0", "1.234"):
        response = browser.post(estate_url(estate, f"members/{member.user_id}/"), {**form, "amount": amount})
        assert response.status_code == 400, amount
        assert 'id="id_amount_error"' in response.content.decode(), amount
    # The same key with another amount after a first credit: refused, in words.
    assert browser.post(estate_url(estate, f"members/{member.user_id}/"), form).status_code == 302
    reused = browser.post(estate_url(estate, f"members/{member.user_id}/"), {**form, "amount": "1.00"})
    assert reused.status_code == 400 and "already sent with another amount" in reused.content.decode()
    assert Transaction.objects.filter(payer=member.user, type=TransactionType.DEPOSIT).count() == 1
    assert before != db_snapshot()


def test_staff_cannot_credit_their_own_wallet(estate: Estate) -> None:
    me = estate.treasurer
    browser = browser_as(me)
    html = browser.get(estate_url(estate, f"members/{me.user_id}/")).content.decode()
    assert "Record money received" not in html
    response = browser.post(
        estate_url(estate, f"members/{me.user_id}/"),
        {"action": "credit", "amount": "100", "idempotency_key": new_key("self")},
    )
    assert response.status_code == 302
    assert not Transaction.objects.filter(payer=me.user, type=TransactionType.DEPOSIT).exists()


def test_an_auditor_is_refused_every_write(estate: Estate) -> None:
    member = estate.residents[0]
    browser = browser_as(estate.auditor)
    before = db_snapshot()
    for body in (
        {"action": "credit", "amount": "100", "idempotency_key": new_key("x")},
        {"action": "role", "role": "admin"},
        {"action": "deactivate"},
    ):
        response = browser.post(estate_url(estate, f"members/{member.user_id}/"), body)
        assert response.status_code == 403, body
    assert db_snapshot() == before


def test_a_treasurer_records_money_but_does_not_manage_members(estate: Estate) -> None:
    member = estate.residents[0]
    browser = browser_as(estate.treasurer)
    html = browser.get(estate_url(estate, f"members/{member.user_id}/")).content.decode()
    assert "Record money received" in html and "Change the role" not in html
    assert browser.post(estate_url(estate, f"members/{member.user_id}/"), {"action": "deactivate"}).status_code == 403


def test_an_admin_changes_a_role_and_deactivates(estate: Estate) -> None:
    member = estate.residents[0]
    browser = browser_as(estate.admin)
    url = estate_url(estate, f"members/{member.user_id}/")
    response = browser.post(url, {"action": "role", "role": "treasurer"})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.role == Role.TREASURER
    assert f"{member.user.name} is now Treasurer." in browser.get(url).content.decode()
    assert browser.post(url, {"action": "role", "role": "emperor"}).status_code == 400
    assert browser.post(url, {"action": "deactivate"}).status_code == 302
    member.refresh_from_db()
    assert member.active is False
    page = browser.get(url).content.decode()
    assert "is deactivated" in page and "Deactivate this member" not in page and "Record money received" not in page
    assert AuditEvent.objects.filter(cluster=estate.cluster, target_id=str(member.pk)).count() >= 2


def test_the_last_admin_is_told_why_they_cannot_step_down(estate: Estate) -> None:
    me = estate.admin
    browser = browser_as(me)
    url = estate_url(estate, f"members/{me.user_id}/")
    response = browser.post(url, {"action": "deactivate"})
    assert response.status_code == 302
    me.refresh_from_db()
    assert me.active is True
    assert 'class="message message-error"' in browser.get(url).content.decode()


def test_a_staff_members_own_card_top_up_reads_as_one_as_on_the_residents_wallet(
    estate: Estate,
    fake: Any,  # noqa: F811
) -> None:
    connect(estate, fake)
    me = estate.treasurer
    top_up = start(me, "5000.00")
    fake.pay(top_up.reference, send_webhook=False)
    with committed():
        assert get_return(top_up.reference).json()["status"] == "credited"
    estate.fund(estate.residents[0], "300.00")  # money a manager recorded: a deposit
    browser = browser_as(me)
    own = browser.get(estate_url(estate, f"members/{me.user_id}/")).content.decode()
    assert '<td data-label="Entry">Top-up by card' in own and '<td data-label="Entry">Deposit' not in own
    # The estate's ledger and the entry's own page name it the same way; a deposit a
    # manager recorded is still a deposit.
    ledger = browser.get(estate_url(estate, "transactions/")).content.decode()
    assert '<td data-label="What">Top-up by card' in ledger and '<td data-label="What">Deposit' in ledger
    top_up.refresh_from_db()
    entry = browser.get(estate_url(estate, f"transactions/{top_up.transaction_id}/")).content.decode()
    assert "<h1>Top-up by card of ₦5,000.00" in entry
    wallet = browser.get(estate_url(estate, "wallet/")).content.decode()
    assert '<p class="tx-what">Top-up by card</p>' in wallet


# --- queries --------------------------------------------------------------------------------


def _queries(estate: Estate, path: str, **params: str) -> int:
    browser = browser_as(estate.admin)
    browser.get(estate_url(estate, path), **params)  # session and cookies settle
    headers = HX if "card" in params else None
    n, response = count_queries(lambda: browser.client.get(estate_url(estate, path), params, headers=headers))
    assert response.status_code == 200, response.content[:300]
    return n


def _busy_estate(residents: int) -> Estate:
    estate = make_estate(residents=residents)
    for n in range(3):
        bill = estate.wide_bill(title=f"Levy {n}")
        for member in estate.residents[:-1][: n + 1]:
            _pay(estate, bill, member)
        bill_dispute(access=access(estate.residents[-1]), bill=bill, reason="Not mine")
    _overdue_bill(estate, estate.residents[0])
    return estate


EXPECTED_LIST_QUERIES = 6
EXPECTED_CARD_QUERIES = 6
EXPECTED_MEMBER_QUERIES = 10


def test_each_page_costs_the_same_queries_with_1_or_many_rows() -> None:
    small = _busy_estate(residents=2)
    large = _busy_estate(residents=30)
    assert _queries(small, "members/") == _queries(large, "members/") == EXPECTED_LIST_QUERIES
    for estate in (small, large):
        filtered = _queries(estate, "members/", has_overdue="on", search="e", role="resident")
        assert _queries(estate, "members/", has_disputed="on", status="active") == EXPECTED_LIST_QUERIES
        assert filtered == EXPECTED_LIST_QUERIES
    assert (
        _queries(small, "members/", card=str(small.residents[0].user_id))
        == _queries(large, "members/", card=str(large.residents[0].user_id))
        == EXPECTED_CARD_QUERIES
    )
    assert (
        _queries(small, f"members/{small.residents[0].user_id}/")
        == _queries(large, f"members/{large.residents[0].user_id}/")
        == EXPECTED_MEMBER_QUERIES
    )
