"""The bill pages over HTTP: the list and its filters, a new bill, one bill (statuses,
edit, cancel), who may do what, and the queries each page costs."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

from levy.audit.models import AuditEvent
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, make_estate, new_key
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db


def _due(days: int = 20) -> str:
    return (estate_today() + datetime.timedelta(days=days)).isoformat()


def _new_bill(**overrides: str) -> dict[str, str]:
    return {
        "title": "Generator diesel",
        "description": "December top-up",
        "category": "electricity",
        "amount": "7500.50",
        "due_date": _due(),
        "target": "estate",
        "idempotency_key": new_key("web-bill"),
        **overrides,
    }


def test_the_list_shows_each_bill_with_its_counts(estate: Estate) -> None:
    bill = estate.wide_bill(title="Service charge December")
    payer, disputer = estate.residents[0], estate.residents[1]
    estate.fund(payer, "20000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
    bill_dispute(access=access(disputer), bill=bill, reason="Not here in December")
    estate.user_bill(estate.residents[2], title="Gate remote")
    html = browser_as(estate.auditor).get(estate_url(estate, "bills/")).content.decode()
    assert "Service charge December" in html and "Gate remote" in html
    assert "1 of 3 paid · 1 disputed" in html
    assert 'aria-label="1 paid, 1 pending, 1 disputed"' in html, re.findall('aria-label="[^"]*"', html)
    assert "₦15,000.00" in html
    assert "New bill" not in html  # an auditor issues nothing


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ({"search": "gate"}, ["Gate remote"], ["Estate levy"]),
        ({"scope": "cluster"}, ["Estate levy"], ["Gate remote"]),
        ({"scope": "user"}, ["Gate remote"], ["Estate levy"]),
        ({"category": "security"}, ["Gate remote"], ["Estate levy"]),
        ({"cancelled": "yes"}, [], ["Gate remote", "Estate levy"]),
        ({"due_before": _due(10)}, ["Gate remote"], ["Estate levy"]),
    ],
)
def test_filters_live_in_the_url(estate: Estate, query: dict[str, str], shown: list[str], hidden: list[str]) -> None:
    estate.wide_bill(title="Estate levy")
    estate.user_bill(
        estate.residents[0],
        title="Gate remote",
        category="security",
        due_date=estate_today() + datetime.timedelta(days=5),
    )
    html = browser_as(estate.admin).get(estate_url(estate, "bills/"), **query).content.decode()
    for title in shown:
        assert title in html, (query, title)
    for title in hidden:
        assert title not in html, (query, title)


def test_the_list_pages_by_cursor(estate: Estate) -> None:
    for n in range(27):
        Bill.objects.create(
            cluster=estate.cluster,
            reference=f"BILL-X-{n:03}",
            title=f"Old bill {n:02}",
            category="other",
            amount=Decimal("10.00"),
            due_date=estate_today(),
            created_by=estate.admin.user,
        )
    browser = browser_as(estate.admin)
    first = browser.get(estate_url(estate, "bills/")).content.decode()
    assert first.count('href="/estates/') >= 25 and "Old bill 26" in first and "Old bill 01" not in first
    cursor = first.split("?after=")[1].split('"')[0]
    second = browser.get(estate_url(estate, "bills/"), after=cursor).content.decode()
    assert "Old bill 01" in second and "Old bill 00" in second and "Old bill 26" not in second
    assert browser.get(estate_url(estate, "bills/"), after="garbage").status_code == 200


def test_a_manager_issues_an_estate_wide_bill(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    response = browser.post(estate_url(estate, "bills/new/"), _new_bill())
    bill = Bill.objects.get(cluster=estate.cluster, title="Generator diesel")
    assert response.status_code == 302
    assert response["Location"] == estate_url(estate, f"bills/{bill.pk}/")
    assert (bill.amount, bill.user_id, bill.category, bill.description) == (
        Decimal("7500.50"),
        None,
        "electricity",
        "December top-up",
    )
    assert AuditEvent.objects.filter(action="bill.create", cluster=estate.cluster).count() == 1
    page = browser.get(response["Location"]).content.decode()
    assert f"Bill {bill.reference} issued." in page
    assert "Everyone in the estate (3 residents)" in page


def test_a_manager_issues_a_bill_for_one_resident_found_by_name(estate: Estate) -> None:
    resident = estate.residents[1]
    browser = browser_as(estate.treasurer)
    fragment = browser.get(estate_url(estate, "bills/new/"), q=resident.user.name[2:], headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert "<html" not in html and f'value="{resident.user_id}"' in html
    response = browser.post(
        estate_url(estate, "bills/new/"), _new_bill(target="resident", user_id=str(resident.user_id))
    )
    assert response.status_code == 302
    bill = Bill.objects.get(title="Generator diesel")
    assert bill.user_id == resident.user_id


def test_the_search_finds_only_this_estates_residents(estate: Estate, other_estate: Estate) -> None:
    outsider = other_estate.residents[0].user
    html = (
        browser_as(estate.admin)
        .get(estate_url(estate, "bills/new/"), q=outsider.email, headers={"HX-Request": "true"})
        .content.decode()
    )
    assert str(outsider.pk) not in html and "No resident of this estate matches" in html


def test_bad_input_is_explained_next_to_its_field_and_nothing_is_created(estate: Estate, other_estate: Estate) -> None:
    browser = browser_as(estate.admin)
    bad = browser.post(estate_url(estate, "bills/new/"), _new_bill(amount="1e2", due_date="2001-01-01"))
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'id="id_amount_error"' in html and 'id="id_due_date_error"' in html
    assert "The due date cannot be in the past." in html
    no_one = browser.post(estate_url(estate, "bills/new/"), _new_bill(target="resident"))
    assert "Find the resident by name or email and choose them." in no_one.content.decode()
    theirs = browser.post(
        estate_url(estate, "bills/new/"), _new_bill(target="resident", user_id=str(other_estate.residents[0].user_id))
    )
    assert theirs.status_code == 400 and "Choose an active resident member of this estate." in theirs.content.decode()
    assert not Bill.objects.filter(title="Generator diesel").exists()


@pytest.mark.parametrize("who", ["auditor", "resident"])
def test_those_who_do_not_manage_bills_cannot_issue_edit_or_cancel(estate: Estate, who: str) -> None:
    bill = estate.wide_bill()
    member = estate.auditor if who == "auditor" else estate.residents[0]
    browser = browser_as(member)
    before = db_snapshot()
    assert browser.get(estate_url(estate, "bills/new/")).status_code == 403
    assert browser.post(estate_url(estate, "bills/new/"), _new_bill()).status_code == 403
    assert browser.post(estate_url(estate, f"bills/{bill.pk}/"), {"action": "cancel", "reason": "x"}).status_code == 403
    assert browser.post(estate_url(estate, f"bills/{bill.pk}/"), {"action": "edit", "title": "New"}).status_code == 403
    assert db_snapshot() == before
    if who == "auditor":
        page = browser.get(estate_url(estate, f"bills/{bill.pk}/")).content.decode()
        assert page.count('method="post"') == 1  # signing out only
        assert "Cancel the bill" not in page and "Edit title" not in page


def test_the_bill_page_lists_members_with_a_status_filter(estate: Estate) -> None:
    bill = estate.wide_bill(title="Water")
    bill_acknowledge(access=access(estate.residents[0]), bill=bill)
    browser = browser_as(estate.admin)
    page = browser.get(estate_url(estate, f"bills/{bill.pk}/")).content.decode()
    assert page.count('class="badge badge-pending"') == 2 and page.count('class="badge badge-acknowledged"') == 1
    assert '<span class="badge badge-locked">Locked</span>' in page
    acknowledged = browser.get(estate_url(estate, f"bills/{bill.pk}/"), status="acknowledged").content.decode()
    assert estate.residents[0].user.email in acknowledged and estate.residents[1].user.email not in acknowledged
    assert browser.get(estate_url(estate, f"bills/{bill.pk}/"), status="nonsense").status_code == 200


def test_the_bill_pages_counts_are_the_bars_a_payer_is_not_also_counted_acknowledged(estate: Estate) -> None:
    bill = estate.wide_bill(title="Water")
    payer = estate.residents[0]
    estate.fund(payer, "20000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
    bill_acknowledge(access=access(estate.residents[1]), bill=bill)
    page = browser_as(estate.admin).get(estate_url(estate, f"bills/{bill.pk}/")).content.decode()
    counts = " ".join(re.search(r">([^<>]*still owe it)<", page).group(1).split())  # type: ignore[union-attr]
    assert counts == "1 paid · 1 acknowledged · 1 pending · 2 still owe it", counts


def test_editing_the_title_and_cancelling_go_through_the_services(estate: Estate) -> None:
    bill = estate.wide_bill(title="Water")
    browser = browser_as(estate.admin)
    saved = browser.post(
        estate_url(estate, f"bills/{bill.pk}/"),
        {"action": "edit", "title": "Water, December", "description": "Meter 4"},
    )
    assert saved.status_code == 302
    bill.refresh_from_db()
    assert (bill.title, bill.description) == ("Water, December", "Meter 4")
    empty = browser.post(estate_url(estate, f"bills/{bill.pk}/"), {"action": "cancel", "reason": ""})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()
    cancelled = browser.post(estate_url(estate, f"bills/{bill.pk}/"), {"action": "cancel", "reason": "Issued twice"})
    assert cancelled.status_code == 302
    bill.refresh_from_db()
    assert bill.cancelled_at is not None and bill.cancellation_reason == "Issued twice"
    assert bill.cancelled_by_id == estate.admin.user_id
    again = browser.post(estate_url(estate, f"bills/{bill.pk}/"), {"action": "cancel", "reason": "Again"})
    assert again.status_code == 302
    page = browser.get(estate_url(estate, f"bills/{bill.pk}/")).content.decode()
    assert "This bill has already been cancelled." in page
    bill.refresh_from_db()
    assert bill.cancellation_reason == "Issued twice"
    assert "Cancelled" in page and "Issued twice" in page and "Cancel the bill" not in page


# --- queries ------------------------------------------------------------------------------


def _queries(estate: Estate, path: str, **params: str) -> int:
    browser = browser_as(estate.admin)
    browser.get(path, **params)
    n, response = count_queries(lambda: browser.client.get(path, params))
    assert response.status_code == 200
    return n


EXPECTED = {"bills": 5, "bill": 9, "bill-filtered": 8, "bill-new": 4}


def _estate_with(bills: int, residents: int) -> tuple[Estate, Bill]:
    estate = make_estate(residents=residents)
    bill = None
    for n in range(bills):
        bill = estate.wide_bill(title=f"Bill {n}")
    assert bill is not None
    for member in estate.residents:
        bill_acknowledge(access=access(member), bill=bill)
    return estate, bill


def test_each_bill_page_costs_the_same_queries_with_1_or_many_rows() -> None:
    small, small_bill = _estate_with(bills=1, residents=1)
    large, large_bill = _estate_with(bills=30, residents=30)
    seen = {}
    for name, path, params in [
        ("bills", "bills/", {}),
        ("bill", "bills/{bill}/", {}),
        ("bill-filtered", "bills/{bill}/", {"status": "acknowledged"}),
        ("bill-new", "bills/new/", {}),
    ]:
        counts = [
            _queries(e, estate_url(e, path.format(bill=b.pk)), **params)
            for e, b in ((small, small_bill), (large, large_bill))
        ]
        seen[name] = counts
    assert seen == {name: [n, n] for name, n in EXPECTED.items()}


def test_issuing_bills_shares_the_apis_limit(estate: Estate, settings: object) -> None:
    settings.LEVY_RATE_LIMITS = {**settings.LEVY_RATE_LIMITS, "bill_create": "1/min"}  # type: ignore[attr-defined]
    browser = browser_as(estate.admin)
    assert browser.post(estate_url(estate, "bills/new/"), _new_bill(title="First")).status_code == 302
    refused = browser.post(estate_url(estate, "bills/new/"), _new_bill(title="Second"))
    assert refused.status_code == 400
    assert "You have issued many bills in the last minute." in refused.content.decode()
    assert list(Bill.objects.filter(cluster=estate.cluster).values_list("title", flat=True)) == ["First"]


# --- one bill per form ------------------------------------------------------------------------


def test_the_same_form_sent_twice_issues_one_bill_and_both_answers_show_it(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    form = browser.get(estate_url(estate, "bills/new/")).content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    body = _new_bill(idempotency_key=key)
    first = browser.post(estate_url(estate, "bills/new/"), body)
    again = browser.post(estate_url(estate, "bills/new/"), body)
    bill = Bill.objects.get(cluster=estate.cluster, title="Generator diesel")
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == estate_url(estate, f"bills/{bill.pk}/")
    assert AuditEvent.objects.filter(action="bill.create", cluster=estate.cluster).count() == 1
    page = browser.get(first["Location"]).content.decode()
    assert page.count(f"Bill {bill.reference} issued.") == 1
    other = browser.post(estate_url(estate, "bills/new/"), _new_bill(idempotency_key=key, title="Changed"))
    assert other.status_code == 400 and "This form was already sent with other details." in other.content.decode()
    assert Bill.objects.filter(cluster=estate.cluster).count() == 1


def test_a_form_refused_for_its_input_can_be_corrected_and_sent_again(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    key = new_key("web-bill")
    bad = browser.post(estate_url(estate, "bills/new/"), _new_bill(idempotency_key=key, amount="-5"))
    assert bad.status_code == 400 and f'value="{key}"' in bad.content.decode()  # the same form, the same key
    good = browser.post(estate_url(estate, "bills/new/"), _new_bill(idempotency_key=key))
    assert good.status_code == 302
    missing = _new_bill()
    del missing["idempotency_key"]
    stale = browser.post(estate_url(estate, "bills/new/"), missing)
    assert stale.status_code == 400 and "This form is out of date." in stale.content.decode()
    assert Bill.objects.filter(cluster=estate.cluster).count() == 1
