"""Statements on the pages: the period form on a member's page (staff) and on the wallet
(one's own) downloads the same PDF and CSV as the API, a bad period is explained next
to its field, who may download whose, and the queries a download costs."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from tests.api.conftest import api_as, base
from tests.conftest import Estate
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db


def _rows(response: object) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))  # type: ignore[attr-defined]


def test_a_manager_downloads_a_members_statement_from_their_page(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "500.00")
    estate.fund(member, "250.50")
    today = timezone.localdate()
    page = browser_as(estate.treasurer).get(estate_url(estate, f"members/{member.user_id}/")).content.decode()
    url = estate_url(estate, f"members/{member.user_id}/statement/")
    assert f'<form method="get" action="{url}" class="statement-form" novalidate>' in page
    assert f'name="start" value="{today.replace(day=1).isoformat()}"' in page
    assert f'name="end" value="{today.isoformat()}"' in page
    assert 'name="format" value="pdf">Download the statement (PDF)</button>' in page
    assert 'name="format" value="csv">Download the statement (CSV)</button>' in page

    period = {"start": today.isoformat(), "end": today.isoformat()}
    for staff in (estate.admin, estate.treasurer, estate.auditor):
        response = browser_as(staff).get(url, **period, format="csv")
        assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"] == f'attachment; filename="statement-{today}-{today}.csv"'
        assert response["Cache-Control"] == "private, no-store"
        rows = _rows(response)
        assert [r[2] for r in rows[1:]] == ["opening_balance", "deposit", "deposit", "closing_balance"]
        assert rows[-1][6] == "750.50"
    # The very file the API gives for the same period.
    api = api_as(estate.admin).client.get(f"{base(estate)}/management/members/{member.user_id}/statement.csv", period)
    assert browser_as(estate.admin).get(url, **period, format="csv").content == api.content
    pdf = browser_as(estate.auditor).get(url, **period, format="pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_a_resident_downloads_their_own_statement_from_the_wallet(estate: Estate) -> None:
    member = estate.residents[1]
    estate.fund(member, "1200.00")
    browser = browser_as(member)
    wallet = browser.get(estate_url(estate, "wallet/")).content.decode()
    url = estate_url(estate, "wallet/statement/")
    assert f'action="{url}"' in wallet and "Download the statement (CSV)" in wallet
    response = browser.get(url, format="csv")  # blank days: this month so far
    first, today = timezone.localdate().replace(day=1), timezone.localdate()
    assert response["Content-Disposition"] == f'attachment; filename="statement-{first}-{today}.csv"'
    assert _rows(response)[-1][6] == "1200.00"
    api = api_as(member).client.get(f"{base(estate)}/wallet/statement.csv")
    assert response.content == api.content
    assert browser.get(url, format="pdf").content.startswith(b"%PDF")
    # Only their own: the managers' page for a member is not theirs.
    other = estate_url(estate, f"members/{estate.residents[0].user_id}/statement/")
    assert browser.get(other, format="csv").status_code == 403


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"start": "2026-12-05", "end": "2026-12-01"}, "start", "The start must be on or before the end."),
        ({"start": "yesterday"}, "start", "Enter a date."),
        ({"end": "0001-01-01"}, "end", "Use a date from 1900-01-01 to 2999-12-31."),
        ({"format": "xlsx"}, None, "Choose the PDF or the CSV file."),
    ],
)
def test_a_bad_period_is_explained_next_to_its_field(
    estate: Estate, params: dict[str, str], field: str | None, message: str
) -> None:
    member = estate.residents[0]
    for who, path in ((estate.admin, f"members/{member.user_id}/statement/"), (member, "wallet/statement/")):
        response = browser_as(who).get(estate_url(estate, path), **{"format": "pdf", **params})
        html = response.content.decode()
        assert response.status_code == 400 and response["Content-Type"].startswith("text/html")
        if field:
            assert f'<p class="field-error" id="id_{field}_error">{message}</p>' in html
        else:
            assert f'<p class="field-error">{message}</p>' in html
        assert "Download the statement (PDF)" in html


def test_the_statement_page_without_a_format_shows_the_form(estate: Estate) -> None:
    member = estate.residents[0]
    html = browser_as(estate.admin).get(estate_url(estate, f"members/{member.user_id}/statement/")).content.decode()
    assert f"<h1>Statement of {member.user.get_full_name()}</h1>" in html
    assert f'<a href="{estate_url(estate, f"members/{member.user_id}/")}">{member.user.get_full_name()}</a>' in html
    own = browser_as(member).get(estate_url(estate, "wallet/statement/")).content.decode()
    assert "<h1>Statement</h1>" in own and f'<a href="{estate_url(estate, "wallet/")}">Wallet</a>' in own


@pytest.mark.parametrize("file_format", ["csv", "pdf"])
def test_a_download_costs_the_same_queries_however_long_the_statement(estate: Estate, file_format: str) -> None:
    member = estate.residents[0]
    estate.fund(member, "1.00")
    browser = browser_as(estate.auditor)
    url = estate_url(estate, f"members/{member.user_id}/statement/")
    browser.get(url, format=file_format)  # the session, warm
    one, response = count_queries(lambda: browser.get(url, format=file_format))
    assert response.status_code == 200
    for _ in range(30):
        estate.fund(member, "1.00")
    many, response = count_queries(lambda: browser.get(url, format=file_format))
    assert response.status_code == 200 and one == many, (one, many)
