"""The recurring-bill pages over HTTP: the list (audience, cadence, next due date,
status, bills issued), a new schedule for the estate or one resident, pause, resume and
end through the schedule page, who may do what, and the queries each page costs."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

import pytest

from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillSchedule
from levy.billing.schedules import period_due_date, schedule_create, schedule_end, schedule_pause, schedules_issue_due
from levy.billing.selectors import estate_today
from levy.web.format import estate_date
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, committed, make_estate, schedule_input
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db

TODAY = estate_today()


def _day(days: int) -> datetime.date:
    return TODAY + datetime.timedelta(days=days)


def _new_schedule(**overrides: str) -> dict[str, str]:
    return {
        "title": "Service charge",
        "description": "Cleaning and security",
        "category": "service_charge",
        "amount": "15000",
        "frequency": "quarterly",
        "first_due_date": _day(20).isoformat(),
        "issue_days_before": "10",
        "target": "estate",
        "idempotency_key": f"test-schedule-{uuid.uuid4()}",
        **overrides,
    }


def _schedule(estate: Estate, user_id: Any = None, **overrides: Any) -> BillSchedule:
    with committed():
        return schedule_create(access=access(estate.admin), data=schedule_input(**overrides), user_id=user_id)


def test_the_list_shows_each_schedule_with_audience_cadence_next_due_status_and_bills_issued(estate: Estate) -> None:
    # Due in 5 days, issued 14 days before: periods 0, 1 and 2 are issued by day 70.
    wide = _schedule(estate, title="Estate levy", first_due_date=_day(5))
    with committed():
        schedules_issue_due(_day(70))
    resident = estate.residents[1]
    mine = _schedule(estate, user_id=resident.user_id, title="Parking bay", frequency="yearly", amount="2500.00")
    ended = _schedule(estate, title="Old levy")
    with committed():
        schedule_pause(access=access(estate.admin), schedule=mine)
        schedule_end(access=access(estate.admin), schedule=ended, reason="Replaced")
    html = browser_as(estate.auditor).get(estate_url(estate, "schedules/")).content.decode()
    rows = {title: html.split(title, 1)[1].split("</tr>", 1)[0] for title in ("Estate levy", "Parking bay", "Old levy")}
    wide.refresh_from_db()
    assert Bill.objects.filter(schedule=wide).count() == 3
    assert "estate-wide" in rows["Estate levy"] and "Monthly" in rows["Estate levy"]
    assert wide.next_period == 3
    assert f"Due {estate_date(period_due_date(wide, 3))}" in rows["Estate levy"]
    assert 'class="badge badge-active">Active<' in rows["Estate levy"]
    assert '<td class="num" data-label="Bills issued">3</td>' in rows["Estate levy"]
    assert "₦15,000.00" in rows["Estate levy"]
    assert resident.user.get_full_name() in rows["Parking bay"] and "Yearly" in rows["Parking bay"]
    assert "₦2,500.00" in rows["Parking bay"] and "badge-paused" in rows["Parking bay"]
    assert '<span class="muted">Paused</span>' in rows["Parking bay"]
    assert "badge-ended" in rows["Old levy"] and '<td data-label="Next bill">—</td>' in rows["Old levy"]
    assert "New schedule" not in html  # an auditor creates nothing


def test_the_next_due_date_is_the_schedules_next_period(estate: Estate) -> None:
    _schedule(estate, first_due_date=_day(30))
    html = browser_as(estate.admin).get(estate_url(estate, "schedules/")).content.decode()
    assert f"Due {estate_date(_day(30))}" in html and f"issued {estate_date(_day(16))}" in html
    assert '<td class="num" data-label="Bills issued">0</td>' in html


@pytest.mark.parametrize(
    ("status", "shown", "hidden"),
    [
        ("active", ["Running"], ["Stopped", "Finished"]),
        ("paused", ["Stopped"], ["Running", "Finished"]),
        ("ended", ["Finished"], ["Running", "Stopped"]),
        ("", ["Running", "Stopped", "Finished"], []),
        ("nonsense", ["Running", "Stopped", "Finished"], []),
    ],
)
def test_the_status_tabs_live_in_the_url(estate: Estate, status: str, shown: list[str], hidden: list[str]) -> None:
    _schedule(estate, title="Running")
    stopped, finished = _schedule(estate, title="Stopped"), _schedule(estate, title="Finished")
    with committed():
        schedule_pause(access=access(estate.admin), schedule=stopped)
        schedule_end(access=access(estate.admin), schedule=finished)
    response = browser_as(estate.admin).get(estate_url(estate, "schedules/"), status=status)
    assert response.status_code == 200
    html = response.content.decode()
    for title in shown:
        assert title in html, (status, title)
    for title in hidden:
        assert title not in html, (status, title)


def test_an_empty_list_says_what_to_do(estate: Estate) -> None:
    html = browser_as(estate.admin).get(estate_url(estate, "schedules/")).content.decode()
    assert "No recurring bill yet." in html and "Set up the first one" in html
    paused = browser_as(estate.admin).get(estate_url(estate, "schedules/"), status="paused").content.decode()
    assert "No paused schedule." in paused


def test_a_manager_creates_an_estate_wide_schedule(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    response = browser.post(estate_url(estate, "schedules/new/"), _new_schedule())
    assert response.status_code == 302
    schedule = BillSchedule.objects.get(cluster=estate.cluster)
    assert response["Location"] == estate_url(estate, f"schedules/{schedule.pk}/")
    assert (
        schedule.title,
        schedule.amount,
        schedule.frequency,
        schedule.first_due_date,
        schedule.issue_days_before,
        schedule.user_id,
        schedule.created_by_id,
    ) == ("Service charge", Decimal("15000.00"), "quarterly", _day(20), 10, None, estate.admin.user_id)
    assert AuditEvent.objects.filter(action="schedule.create", cluster=estate.cluster).count() == 1
    page = browser.get(response["Location"]).content.decode()
    assert "Its first bill, for Q" in page and f"is issued on {estate_date(_day(10))}" in page
    assert "Everyone in the estate" in page and "Quarterly, from" in page
    assert "No bill issued yet." in page and "Pause the schedule" in page


def test_a_form_sent_twice_creates_one_schedule(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    url = estate_url(estate, "schedules/new/")
    form = browser.get(url).content.decode()
    key = form.split('name="idempotency_key" value="', 1)[1].split('"', 1)[0]
    assert key.startswith("web-schedule-")
    first = browser.post(url, _new_schedule(idempotency_key=key))
    again = browser.post(url, _new_schedule(idempotency_key=key))  # a double click, or the back button
    schedule = BillSchedule.objects.get(cluster=estate.cluster)
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == estate_url(estate, f"schedules/{schedule.pk}/")
    assert AuditEvent.objects.filter(action="schedule.create", cluster=estate.cluster).count() == 1
    # The same form with other details is refused, in words; nothing more is created.
    other = browser.post(url, _new_schedule(idempotency_key=key, amount="20000"))
    assert other.status_code == 400 and "This form was already sent with other details." in other.content.decode()
    assert BillSchedule.objects.filter(cluster=estate.cluster).count() == 1


def test_a_refused_form_can_be_corrected_and_sent_again_with_its_key(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    url = estate_url(estate, "schedules/new/")
    bad = browser.post(url, _new_schedule(idempotency_key="fix-me", first_due_date="2001-01-01"))
    assert bad.status_code == 400 and 'value="fix-me"' in bad.content.decode()
    assert browser.post(url, _new_schedule(idempotency_key="fix-me")).status_code == 302
    assert BillSchedule.objects.filter(cluster=estate.cluster).count() == 1
    stale = browser.post(url, {k: v for k, v in _new_schedule().items() if k != "idempotency_key"})
    assert stale.status_code == 400 and "This form is out of date." in stale.content.decode()


def test_a_treasurer_creates_a_schedule_for_one_resident_found_by_name(estate: Estate) -> None:
    resident = estate.residents[2]
    browser = browser_as(estate.treasurer)
    fragment = browser.get(
        estate_url(estate, "schedules/new/"), q=resident.user.email[:6], headers={"HX-Request": "true"}
    ).content.decode()
    assert "<html" not in fragment and f'value="{resident.user_id}"' in fragment
    response = browser.post(
        estate_url(estate, "schedules/new/"),
        _new_schedule(target="resident", user_id=str(resident.user_id), frequency="monthly"),
    )
    assert response.status_code == 302
    schedule = BillSchedule.objects.get(cluster=estate.cluster)
    assert (schedule.user_id, schedule.frequency) == (resident.user_id, "monthly")


def test_the_search_finds_only_this_estates_residents(estate: Estate, other_estate: Estate) -> None:
    outsider = other_estate.residents[0].user
    html = (
        browser_as(estate.admin)
        .get(estate_url(estate, "schedules/new/"), q=outsider.email, headers={"HX-Request": "true"})
        .content.decode()
    )
    assert str(outsider.pk) not in html and "No resident of this estate matches" in html


def test_bad_input_is_explained_next_to_its_field_and_nothing_is_created(estate: Estate, other_estate: Estate) -> None:
    browser = browser_as(estate.admin)
    url = estate_url(estate, "schedules/new/")
    bad = browser.post(url, _new_schedule(amount="15,000", first_due_date="2001-01-01", issue_days_before="400"))
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'id="id_amount_error"' in html and 'id="id_first_due_date_error"' in html
    assert "The due date cannot be in the past." in html
    assert "Enter a whole number of days from 0 to 366." in html
    # The choices and the form's own parsing.
    odd = browser.post(url, _new_schedule(frequency="weekly", issue_days_before="two")).content.decode()
    assert 'id="id_frequency_error"' in odd and "Enter a whole number of days from 0 to 366." in odd
    no_one = browser.post(url, _new_schedule(target="resident")).content.decode()
    assert "Find the resident by name or email and choose them." in no_one
    theirs = browser.post(url, _new_schedule(target="resident", user_id=str(other_estate.residents[0].user_id)))
    assert theirs.status_code == 400 and "Choose an active resident member of this estate." in theirs.content.decode()
    assert not BillSchedule.objects.exists()


def test_pause_resume_and_end_go_through_the_services(estate: Estate) -> None:
    schedule = _schedule(estate, first_due_date=_day(3))
    with committed():
        schedules_issue_due(TODAY)
    browser = browser_as(estate.admin)
    url = estate_url(estate, f"schedules/{schedule.pk}/")
    assert browser.post(url, {"action": "pause"}).status_code == 302
    schedule.refresh_from_db()
    assert schedule.paused_at is not None
    page = browser.get(url).content.decode()
    assert "Schedule paused." in page and "No bill is issued until it is resumed" in page
    assert "Resume the schedule" in page
    assert "Pause the schedule" not in page
    assert browser.post(url, {"action": "resume"}).status_code == 302
    schedule.refresh_from_db()
    assert schedule.paused_at is None and schedule.next_period == 1
    page = browser.get(url).content.decode()
    assert "Resumed. The next bill, for" in page and "Pause the schedule" in page
    assert browser.post(url, {"action": "end", "reason": "The levy was replaced"}).status_code == 302
    schedule.refresh_from_db()
    assert schedule.ended_at is not None and schedule.end_reason == "The levy was replaced"
    page = browser.get(url).content.decode()
    assert "Schedule ended." in page and "The levy was replaced. No more bills will be issued." in page
    assert "End the schedule" not in page and "Pause the schedule" not in page
    # The bill issued before is untouched and listed.
    [bill] = Bill.objects.filter(schedule=schedule)
    assert bill.cancelled_at is None and bill.title in page
    bill_page = browser.get(estate_url(estate, f"bills/{bill.pk}/")).content.decode()
    assert f'Issued by the recurring bill <a href="{url}">Service charge</a> (monthly).' in bill_page
    assert list(
        AuditEvent.objects.filter(cluster=estate.cluster, action__startswith="schedule.")
        .order_by("created_at")
        .values_list("action", flat=True)
    ) == ["schedule.create", "schedule.pause", "schedule.resume", "schedule.end"]
    # An ended schedule refuses, in words.
    assert browser.post(url, {"action": "pause"}).status_code == 302
    assert "This schedule has ended." in browser.get(url).content.decode()
    assert browser.post(url, {"action": "nonsense"}).status_code == 302
    assert "Choose what to do: pause, resume or end the schedule." in browser.get(url).content.decode()


@pytest.mark.parametrize("who", ["auditor", "resident"])
def test_those_who_do_not_manage_bills_cannot_create_pause_or_end(estate: Estate, who: str) -> None:
    schedule = _schedule(estate)
    member = estate.auditor if who == "auditor" else estate.residents[0]
    browser = browser_as(member)
    before = db_snapshot()
    assert browser.get(estate_url(estate, "schedules/new/")).status_code == 403
    assert browser.post(estate_url(estate, "schedules/new/"), _new_schedule()).status_code == 403
    for action in ("pause", "resume", "end"):
        assert browser.post(estate_url(estate, f"schedules/{schedule.pk}/"), {"action": action}).status_code == 403
    assert db_snapshot() == before
    page = browser.get(estate_url(estate, f"schedules/{schedule.pk}/"))
    if who == "auditor":
        html = page.content.decode()
        assert html.count('method="post"') == 1  # signing out only
        assert "Pause the schedule" not in html and "End the schedule" not in html
    else:
        assert page.status_code == 403


def test_the_nav_links_the_schedules_for_managers_only(estate: Estate) -> None:
    link = f'href="{estate_url(estate, "schedules/")}"'
    assert link in browser_as(estate.auditor).get(estate_url(estate, "bills/")).content.decode()
    assert link not in browser_as(estate.residents[0]).get("/notifications/").content.decode()


# --- queries ------------------------------------------------------------------------------


EXPECTED = {"schedules": 5, "schedules-paused": 5, "schedule": 7, "schedule-new": 4}


def _queries(estate: Estate, path: str, **params: str) -> int:
    browser = browser_as(estate.admin)
    browser.get(path, **params)
    n, response = count_queries(lambda: browser.client.get(path, params))
    assert response.status_code == 200
    return n


def _estate_with(schedules: int, residents: int) -> tuple[Estate, BillSchedule]:
    estate = make_estate(residents=residents)
    schedule = None
    for n in range(schedules):
        user_id = estate.residents[n % residents].user_id if n % 2 else None
        schedule = _schedule(estate, user_id=user_id, title=f"Levy {n}", first_due_date=_day(1))
        if n % 3 == 0:
            with committed():
                schedule_pause(access=access(estate.admin), schedule=schedule)
    with committed():
        schedules_issue_due(_day(100))  # three or four bills from each running schedule
    assert schedule is not None
    return estate, schedule


def test_each_schedule_page_costs_the_same_queries_with_1_or_many_rows() -> None:
    small, small_schedule = _estate_with(schedules=1, residents=1)
    large, large_schedule = _estate_with(schedules=30, residents=5)
    assert Bill.objects.filter(schedule=large_schedule).count() >= 3
    seen = {}
    for name, path, params in [
        ("schedules", "schedules/", {}),
        ("schedules-paused", "schedules/", {"status": "paused"}),
        ("schedule", "schedules/{schedule}/", {}),
        ("schedule-new", "schedules/new/", {}),
    ]:
        seen[name] = [
            _queries(e, estate_url(e, path.format(schedule=s.pk)), **params)
            for e, s in ((small, small_schedule), (large, large_schedule))
        ]
    assert seen == {name: [n, n] for name, n in EXPECTED.items()}
