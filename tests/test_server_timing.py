"""The Server-Timing header (levy.common.server_timing): off by default; when on, it
reports exactly the queries Django ran for the request, and durations that parse."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tests.api.conftest import api_as, base
from tests.conftest import Estate

pytestmark = pytest.mark.django_db

HEADER = re.compile(r'^db;dur=(?P<db>\d+\.\d{2});desc="(?P<n>\d+) queries", app;dur=(?P<app>\d+\.\d{2})$')


def timing(response: Any) -> tuple[int, float, float]:
    match = HEADER.match(response["Server-Timing"])
    assert match, response["Server-Timing"]
    return int(match["n"]), float(match["db"]), float(match["app"])


@override_settings(LEVY_SERVER_TIMING=False)
def test_header_absent_when_off(estate: Estate) -> None:
    estate.wide_bill()
    response = api_as(estate.residents[0]).get(f"{base(estate)}/bills/")
    assert response.status_code == 200
    assert "Server-Timing" not in response


@override_settings(LEVY_SERVER_TIMING=True)
@pytest.mark.parametrize("who", ["resident", "admin"])
def test_query_count_matches_what_django_ran(estate: Estate, who: str) -> None:
    for _ in range(3):
        estate.wide_bill()
    caller, path = {
        "resident": (estate.residents[0], f"{base(estate)}/bills/"),
        "admin": (estate.admin, f"{base(estate)}/management/bills/"),
    }[who]
    api = api_as(caller)
    with CaptureQueriesContext(connection) as captured:
        response = api.get(path)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3
    queries, db_ms, app_ms = timing(response)
    assert len(captured) > 0
    assert queries == len(captured)
    assert 0 < db_ms <= app_ms


@override_settings(LEVY_SERVER_TIMING=True)
def test_a_write_counts_its_transaction_statements(estate: Estate) -> None:
    bill = estate.wide_bill()
    client = api_as(estate.residents[0]).client
    # The test client, not Api.post: commit callbacks (here, the in-process fan-out)
    # would run after the response and be captured too. In a server they run at the
    # commit, inside the request; here the test's transaction never commits.
    with CaptureQueriesContext(connection) as captured:
        response = client.post(f"{base(estate)}/bills/{bill.pk}/acknowledge/", format="json")
    assert response.status_code == 200
    queries, db_ms, app_ms = timing(response)
    # Savepoints are statements too: both counts include them.
    assert any("SAVEPOINT" in q["sql"] for q in captured.captured_queries)
    assert queries == len(captured)
    assert 0 < db_ms <= app_ms


@override_settings(LEVY_SERVER_TIMING=True)
def test_a_request_without_sql_reports_zero_queries(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    queries, db_ms, app_ms = timing(response)
    assert (queries, db_ms) == (0, 0.0)
    assert app_ms >= 0
