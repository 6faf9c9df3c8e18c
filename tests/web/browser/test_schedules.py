"""Recurring bills and late fees in a real browser: create a schedule, pause it, resume
it; an auditor finds no control that writes; issue a bill with a late fee and read the
rule on its page."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

from levy.billing.models import Bill, BillSchedule
from levy.billing.schedules import schedule_create, schedules_issue_due
from levy.billing.selectors import estate_today
from tests.conftest import access, make_estate, schedule_input
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def test_create_a_schedule_pause_it_and_resume_it(page, live) -> None:
    estate = make_estate(residents=3)
    # One that has issued bills already, so the list shows a count.
    earlier = schedule_create(
        access=access(estate.admin),
        data=schedule_input(title="Security levy", first_due_date=estate_today() + datetime.timedelta(days=2)),
    )
    schedules_issue_due(estate_today())
    sign_in(page, live, estate.admin.user)
    page.get_by_role("link", name="Schedules").click()
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Title").fill("Service charge")
    page.get_by_label("Category").select_option("service_charge")
    page.get_by_label("Amount").fill("15000")
    page.get_by_label("Quarterly").check()
    first_due = estate_today() + datetime.timedelta(days=40)
    page.get_by_label("First due date").fill(first_due.isoformat())
    page.get_by_label("Days of notice").fill("10")
    shoot(page, "schedule-new")
    page.get_by_role("button", name="Create the schedule").click()
    page.wait_for_url(re.compile(r"/schedules/[0-9a-f-]{36}/$"))
    schedule = BillSchedule.objects.get(cluster=estate.cluster, title="Service charge")
    assert (schedule.amount, schedule.frequency, schedule.first_due_date, schedule.issue_days_before) == (
        Decimal("15000.00"),
        "quarterly",
        first_due,
        10,
    )
    assert schedule.user_id is None and schedule.paused_at is None
    assert page.get_by_role("status").inner_text().startswith("Schedule created. Its first bill, for Q")
    shoot(page, "schedule")

    page.get_by_role("button", name="Pause the schedule").click()
    page.wait_for_load_state("networkidle")
    schedule.refresh_from_db()
    assert schedule.paused_at is not None
    assert page.locator("h1 .badge").inner_text() == "Paused"
    shoot(page, "schedule-paused")

    page.get_by_role("button", name="Resume the schedule").click()
    page.wait_for_load_state("networkidle")
    schedule.refresh_from_db()
    assert schedule.paused_at is None and schedule.ended_at is None
    assert page.locator("h1 .badge").inner_text() == "Active"

    page.get_by_role("link", name="Recurring bills").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    row = page.locator("tr", has_text="Security levy")
    assert row.locator('[data-label="Bills issued"]').inner_text() == "1"
    assert Bill.objects.filter(schedule=earlier).count() == 1
    shoot(page, "schedules")


def test_a_schedule_for_one_resident_found_by_typing(page, live) -> None:
    estate = make_estate(residents=4)
    resident = estate.residents[1]
    sign_in(page, live, estate.treasurer.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/schedules/new/"))
    page.get_by_label("Title").fill("Parking bay")
    page.get_by_label("Category").select_option("other")
    page.get_by_label("Amount").fill("2500")
    page.get_by_label("Yearly").check()
    page.get_by_label("First due date").fill((estate_today() + datetime.timedelta(days=60)).isoformat())
    page.get_by_label("One resident").check()
    page.get_by_label("Find the resident by name or email").press_sequentially(resident.user.name[-4:], delay=30)
    match = page.get_by_label(resident.user.name, exact=False)
    match.wait_for()
    match.check()
    page.get_by_role("button", name="Create the schedule").click()
    page.wait_for_url(re.compile(r"/schedules/[0-9a-f-]{36}/$"))
    schedule = BillSchedule.objects.get(cluster=estate.cluster)
    assert (schedule.user_id, schedule.frequency) == (resident.user_id, "yearly")
    assert page.get_by_text(resident.user.email).is_visible()


def test_an_auditor_finds_no_control_that_writes(page, live) -> None:
    estate = make_estate(residents=1)
    schedule = schedule_create(access=access(estate.admin), data=schedule_input(title="Water"))
    sign_in(page, live, estate.auditor.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/schedules/"))
    assert page.get_by_role("link", name="New schedule").count() == 0
    page.get_by_role("link", name="Water").click()
    buttons = [b.strip() for b in page.get_by_role("button").all_inner_texts()]
    assert buttons == ["Sign out"], buttons
    shoot(page, "schedule-auditor")
    assert page.goto(live(f"/estates/{estate.cluster.pk}/schedules/new/")).status == 403
    schedule.refresh_from_db()
    assert schedule.paused_at is None and schedule.ended_at is None


def test_issue_a_bill_with_a_late_fee(page, live) -> None:
    estate = make_estate(residents=2)
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/bills/new/"))
    page.get_by_label("Title").fill("Service charge January")
    page.get_by_label("Category").select_option("service_charge")
    page.get_by_label("Amount").fill("15000")
    due = estate_today() + datetime.timedelta(days=14)
    page.get_by_label("Due date", exact=True).fill(due.isoformat())
    page.get_by_label("A percentage of the bill").check()
    # A mistake first: the message is next to the field.
    page.get_by_label("Fee", exact=True).fill("150")
    page.get_by_label("Days of grace after the due date").fill("7")
    page.get_by_role("button", name="Issue the bill").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("#id_late_fee_value_error").inner_text() == "A percentage is at most 100."
    assert page.get_by_label("A percentage of the bill").is_checked()
    shoot(page, "bill-new-late-fee-error")
    page.get_by_label("Fee", exact=True).fill("5")
    page.get_by_role("button", name="Issue the bill").click()
    page.wait_for_url(re.compile(r"/bills/[0-9a-f-]{36}/$"))
    bill = Bill.objects.get(cluster=estate.cluster, title="Service charge January")
    assert (bill.late_fee_kind, bill.late_fee_value, bill.late_fee_grace_days) == ("percent", Decimal("5.00"), 7)
    terms = page.locator(".terms").inner_text()
    assert "5% of the amount (₦750.00) after 7 days of grace" in terms
    shoot(page, "bill-late-fee")
