"""``Download CSV`` on the bill pages: the link carries the list's filters, and the file
holds every row the filtered list shows (the streamed exports of levy.reports)."""

from __future__ import annotations

import csv
import datetime
import html
import io
import re
from decimal import Decimal
from typing import Any

import pytest

from levy.billing.models import Bill
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge
from tests.conftest import Estate, access
from tests.web.conftest import browser_as, estate_url

pytestmark = pytest.mark.django_db


def _download(browser: Any, page_html: str, name: str) -> list[dict[str, str]]:
    link = html.unescape(re.search(rf'href="([^"]*/{re.escape(name)}[^"]*)"', page_html).group(1))  # type: ignore[union-attr]
    response = browser.get(link)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Cache-Control"] == "private, no-store"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_bills_csv_has_the_lists_filters_and_every_page(estate: Estate) -> None:
    estate.wide_bill(title="Estate levy")
    estate.user_bill(estate.residents[0], title="Gate remote", category="security")
    for n in range(27):
        Bill.objects.create(
            cluster=estate.cluster,
            reference=f"BILL-X-{n:03}",
            title=f"Old security bill {n:02}",
            category="security",
            amount=Decimal("10.00"),
            due_date=estate_today() + datetime.timedelta(days=3),
            created_by=estate.admin.user,
        )
    browser = browser_as(estate.auditor)
    page = browser.get(estate_url(estate, "bills/"), category="security").content.decode()
    rows = _download(browser, page, "bills/export.csv")
    assert len(rows) == 28 and {r["category"] for r in rows} == {"security"}  # more than the page's 25
    every = _download(browser, browser.get(estate_url(estate, "bills/")).content.decode(), "bills/export.csv")
    assert len(every) == 29


def test_a_bills_csv_of_its_members_has_the_status_filter(estate: Estate) -> None:
    bill = estate.wide_bill(title="Water")
    bill_acknowledge(access=access(estate.residents[0]), bill=bill)
    browser = browser_as(estate.admin)
    page = browser.get(estate_url(estate, f"bills/{bill.pk}/"), status="acknowledged").content.decode()
    rows = _download(browser, page, f"bills/{bill.pk}/members.csv")
    assert [r["email"] for r in rows] == [estate.residents[0].user.email]
    assert {r["status"] for r in rows} == {"acknowledged"}
    everyone = _download(browser, browser.get(estate_url(estate, f"bills/{bill.pk}/")).content.decode(), "members.csv")
    assert len(everyone) == 3


def test_a_resident_downloads_no_list(estate: Estate) -> None:
    bill = estate.wide_bill(title="Water")
    browser = browser_as(estate.residents[0])
    paths = (
        "bills/export.csv",
        f"bills/{bill.pk}/members.csv",
        "disputes/export.csv",
        "transactions/export.csv",
        "members/export.csv",
    )
    for path in paths:
        assert browser.get(estate_url(estate, path)).status_code == 403, path
