"""The disputes pages over HTTP: the open queue (waiting longest first) then the latest
decisions, the status filter in the URL, uphold or reject with a note through the API's
service, who may do it, the CSV of what the list shows, and the queries each page costs."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.utils import timezone

from levy.audit.models import AuditEvent
from levy.billing.models import BillDispute, DisputeStatus
from levy.billing.services import bill_dispute, dispute_resolve
from levy.notifications.models import Notification
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, make_estate
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db


def _dispute(estate: Estate, n: int, title: str, *, days_ago: int = 0) -> BillDispute:
    bill = estate.wide_bill(title=title)
    dispute = bill_dispute(access=access(estate.residents[n]), bill=bill, reason=f"Reason about {title}")
    if days_ago:
        BillDispute.objects.filter(pk=dispute.pk).update(created_at=timezone.now() - datetime.timedelta(days=days_ago))
    return dispute


def _order(html: str, *titles: str) -> list[int]:
    return [html.index(f"disputes {t}") for t in titles]


def test_the_open_queue_comes_first_longest_waiting_first_then_the_latest_decisions(estate: Estate) -> None:
    _dispute(estate, 0, "Water", days_ago=1)
    _dispute(estate, 1, "Security", days_ago=5)
    decided = _dispute(estate, 2, "Diesel", days_ago=9)
    dispute_resolve(access=access(estate.admin), dispute=decided, resolution="rejected", note="Meter read correctly")
    html = browser_as(estate.auditor).get(estate_url(estate, "disputes/")).content.decode()
    water, security, diesel = _order(html, "Water", "Security", "Diesel")
    assert security < water < diesel
    assert html.index("Recently resolved") < diesel
    assert "Meter read correctly" in html and "Rejected</strong> by" in html
    assert "<summary>Resolve</summary>" not in html and 'name="resolution"' not in html  # an auditor resolves nothing


@pytest.mark.parametrize(
    ("status", "shown", "hidden"),
    [
        ("open", ["Water"], ["Diesel", "Gas"]),
        ("resolved", ["Diesel", "Gas"], ["Water"]),
        ("upheld", ["Gas"], ["Diesel", "Water"]),
        ("rejected", ["Diesel"], ["Gas", "Water"]),
        ("all", ["Diesel", "Gas", "Water"], []),
        ("nonsense", ["Water"], []),
    ],
)
def test_the_status_filter_lives_in_the_url(estate: Estate, status: str, shown: list[str], hidden: list[str]) -> None:
    _dispute(estate, 0, "Water")
    for n, (title, resolution) in enumerate((("Diesel", "rejected"), ("Gas", "upheld")), start=1):
        dispute_resolve(
            access=access(estate.admin), dispute=_dispute(estate, n, title), resolution=resolution, note="Decided"
        )
    response = browser_as(estate.admin).get(estate_url(estate, "disputes/"), status=status)
    assert response.status_code == 200
    html = response.content.decode()
    main = html.split('id="recent-heading"')[0]  # the list asked for, without "Recently resolved"
    for title in shown:
        assert f"disputes {title}" in main, (status, title)
    for title in hidden:
        assert f"disputes {title}" not in main, (status, title)


def test_upholding_from_the_queue_waives_the_bill_tells_the_resident_and_returns_to_the_list(estate: Estate) -> None:
    dispute = _dispute(estate, 0, "Water")
    browser = browser_as(estate.treasurer)
    back = estate_url(estate, "disputes/") + "?status=open"
    response = browser.post(
        estate_url(estate, f"disputes/{dispute.pk}/"),
        {"resolution": "upheld", "note": "You were away all month", "back": back},
    )
    assert response.status_code == 302 and response["Location"] == back
    dispute.refresh_from_db()
    assert (dispute.status, dispute.resolution_note, dispute.resolved_by_id) == (
        DisputeStatus.UPHELD,
        "You were away all month",
        estate.treasurer.user_id,
    )
    assert AuditEvent.objects.filter(action="dispute.resolve", cluster=estate.cluster).count() == 1
    assert Notification.objects.filter(
        recipient=estate.residents[0].user, event_key__startswith="DISPUTE_RESOLVED"
    ).exists()
    page = browser.get(back).content.decode()
    assert f"Dispute upheld: {estate.residents[0].user.get_full_name()} no longer owes Water." in page
    assert "No open dispute." in page


def test_a_note_is_required_and_a_decision_is_made_once(estate: Estate) -> None:
    dispute = _dispute(estate, 0, "Water")
    browser = browser_as(estate.admin)
    path = estate_url(estate, f"disputes/{dispute.pk}/")
    empty = browser.post(path, {"resolution": "rejected", "note": "  "})
    assert empty.status_code == 400
    assert "Write a note: the resident reads it with the decision." in empty.content.decode()
    nothing = browser.post(path, {"note": "Because"})
    assert nothing.status_code == 400 and "Choose to uphold or to reject the dispute." in nothing.content.decode()
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN
    assert browser.post(path, {"resolution": "rejected", "note": "Owed"}).status_code == 302
    again = browser.post(path, {"resolution": "upheld", "note": "Changed my mind"})
    assert again.status_code == 302 and again["Location"] == estate_url(estate, "disputes/")
    assert "This dispute has already been resolved." in browser.get(again["Location"]).content.decode()
    dispute.refresh_from_db()
    assert (dispute.status, dispute.resolution_note) == (DisputeStatus.REJECTED, "Owed")
    detail = browser.get(path).content.decode()
    assert "Owed" in detail and 'name="resolution"' not in detail


def test_back_goes_only_to_the_disputes_list(estate: Estate) -> None:
    dispute = _dispute(estate, 0, "Water")
    response = browser_as(estate.admin).post(
        estate_url(estate, f"disputes/{dispute.pk}/"),
        {"resolution": "rejected", "note": "Owed", "back": "https://evil.example/disputes/"},
    )
    assert response["Location"] == estate_url(estate, "disputes/")


@pytest.mark.parametrize("who", ["auditor", "resident"])
def test_those_who_do_not_manage_bills_cannot_resolve(estate: Estate, who: str) -> None:
    dispute = _dispute(estate, 0, "Water")
    member = estate.auditor if who == "auditor" else estate.residents[1]
    browser = browser_as(member)
    before = db_snapshot()
    response = browser.post(estate_url(estate, f"disputes/{dispute.pk}/"), {"resolution": "upheld", "note": "Yes"})
    assert response.status_code == 403
    assert db_snapshot() == before
    page = browser.get(estate_url(estate, f"disputes/{dispute.pk}/"))
    if who == "auditor":
        assert page.status_code == 200 and 'name="resolution"' not in page.content.decode()
    else:
        assert page.status_code == 403


def test_the_csv_is_what_the_list_shows_with_its_filter(estate: Estate) -> None:
    _dispute(estate, 0, "Water", days_ago=2)
    _dispute(estate, 1, "=cmd|' /C calc'!A0", days_ago=3)
    decided = _dispute(estate, 2, "Diesel")
    dispute_resolve(access=access(estate.admin), dispute=decided, resolution="upheld", note="Fine")
    browser = browser_as(estate.auditor)
    page = browser.get(estate_url(estate, "disputes/"), status="open").content.decode()
    assert f'href="{estate_url(estate, "disputes/export.csv")}?status=open"' in page
    response = browser.get(estate_url(estate, "disputes/export.csv"), status="open")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="disputes-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["bill_title"] for r in rows] == ["'=cmd|' /C calc'!A0", "Water"]  # oldest first, defused
    assert {r["status"] for r in rows} == {"open"} and rows[1]["member_email"] == estate.residents[0].user.email
    upheld = browser.get(estate_url(estate, "disputes/export.csv"), status="upheld")
    assert [r["bill_title"] for r in csv.DictReader(io.StringIO(b"".join(upheld.streaming_content).decode()))] == [
        "Diesel"
    ]


# --- queries ------------------------------------------------------------------------------

EXPECTED = {"disputes": 6, "disputes-resolved": 5, "dispute": 6}


def _estate_with(disputes: int) -> tuple[Estate, BillDispute]:
    estate = make_estate(residents=max(disputes, 1))
    last = None
    for n in range(disputes):
        last = _dispute(estate, n, f"Bill {n}")
        if n % 2:
            dispute_resolve(access=access(estate.admin), dispute=last, resolution="rejected", note="No")
    assert last is not None
    return estate, last


def test_each_disputes_page_costs_the_same_queries_with_1_or_many_rows() -> None:
    small = _estate_with(2)
    large = _estate_with(30)
    seen = {}
    for name, path, params in [
        ("disputes", "disputes/", {}),
        ("disputes-resolved", "disputes/", {"status": "resolved"}),
        ("dispute", "disputes/{dispute}/", {}),
    ]:
        counts = []
        for estate, dispute in (small, large):
            browser = browser_as(estate.admin)
            url = estate_url(estate, path.format(dispute=dispute.pk))
            browser.get(url, **params)
            n, response = count_queries(lambda: browser.client.get(url, params))  # noqa: B023
            assert response.status_code == 200
            counts.append(n)
        seen[name] = counts
    assert seen == {name: [n, n] for name, n in EXPECTED.items()}
