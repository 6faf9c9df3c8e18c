"""CSV exports of the manager lists: the same rows and filters as the lists, streamed."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from levy.billing.payments import bill_pay
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute
from levy.reports import exports
from levy.reports.csvfiles import csv_chunks
from tests.api.conftest import api_as, base, make_past_due
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db


def build(estate: Estate) -> dict[str, Any]:
    """Bills in several states, members with different summaries, a ledger."""
    r0, r1, r2 = estate.residents
    for member in (r0, r1):
        estate.fund(member, "100000.00")
    water = estate.wide_bill(title="=WATER()", category="water", amount=Decimal("3000.00"))
    service = estate.wide_bill(title="Service charge", amount=Decimal("15000.00"))
    gate = estate.user_bill(r2, title="Gate remote", category="other", amount=Decimal("6500.00"))
    diesel = estate.wide_bill(title="Diesel", category="electricity", amount=Decimal("2000.00"))
    for member in (r0, r1):
        bill_acknowledge(access=access(member), bill=water)
        bill_pay(access=access(member), bill=water, idempotency_key=new_key())
    bill_acknowledge(access=access(r0), bill=service)
    bill_dispute(access=access(r1), bill=service, reason="Away")
    bill_cancel(access=access(estate.admin), bill=diesel, reason="Grid back")
    make_past_due(service)
    return {"water": water, "service": service, "gate": gate, "diesel": diesel}


def download(caller: Any, path: str, **params: Any) -> list[dict[str, str]]:
    response = api_as(caller).client.get(path, params)
    assert response.status_code == 200, response.content[:300]
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def row_of(rows: list[dict[str, str]], pk: Any) -> dict[str, str]:
    return next(r for r in rows if r["id"] == str(pk))


def listed(caller: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a list endpoint, following its pages (two rows a page)."""
    rows: list[dict[str, Any]] = []
    client = api_as(caller).client
    response = client.get(path, {**params, "page_size": 2})
    while True:
        body = response.json()
        assert response.status_code == 200, body
        rows += body["results"]
        if not body["next"]:
            return rows
        response = client.get(body["next"])


def test_the_bill_export_is_the_bill_list_with_every_page(estate: Estate) -> None:
    bills = build(estate)
    m = f"{base(estate)}/management"
    for params in ({}, {"category": "water"}, {"cancelled": "false"}, {"scope": "user"}, {"search": "charge"}):
        exported = download(estate.auditor, f"{m}/bills/export.csv", **params)
        shown = listed(estate.auditor, f"{m}/bills/", **params)
        assert [r["id"] for r in exported] == [b["id"] for b in shown], params
        for row, bill in zip(exported, shown, strict=True):
            assert row["reference"] == bill["reference"]
            assert row["amount"] == bill["amount"]
            assert {k: int(row[k]) for k in bill["stats"] if k != "collected_amount"} == {
                k: v for k, v in bill["stats"].items() if k != "collected_amount"
            }
            assert row["collected_amount"] == bill["stats"]["collected_amount"]
    water = row_of(download(estate.auditor, f"{m}/bills/export.csv"), bills["water"].pk)
    assert water["title"] == "'=WATER()"  # a formula in a title is written as text
    assert [water[k] for k in ("eligible", "paid", "collected_amount", "currency")] == ["3", "2", "6000.00", "NGN"]


def test_one_bills_member_export_is_its_member_list(estate: Estate) -> None:
    bills = build(estate)
    path = f"{base(estate)}/management/bills/{bills['service'].pk}/members"
    for params in ({}, {"status": "disputed"}, {"status": "overdue"}):
        exported = download(estate.treasurer, f"{path}/export.csv", **params)
        shown = listed(estate.treasurer, f"{path}/", **params)
        assert [(r["user_id"], r["status"]) for r in exported] == [(m["user_id"], m["status"]) for m in shown]
    statuses = {r["user_id"]: r["status"] for r in download(estate.treasurer, f"{path}/export.csv")}
    r0, r1, r2 = (str(m.user_id) for m in estate.residents)
    assert statuses == {r0: "overdue", r1: "disputed", r2: "overdue"}


def test_the_member_export_carries_each_members_bill_summary(estate: Estate) -> None:
    build(estate)
    m = f"{base(estate)}/management"
    for params in ({}, {"has_overdue": "true"}, {"role": "resident"}, {"search": estate.residents[0].user.email}):
        exported = download(estate.admin, f"{m}/members/export.csv", **params)
        shown = listed(estate.admin, f"{m}/members/", **params)
        assert [r["id"] for r in exported] == [s["id"] for s in shown], params
        for row, member in zip(exported, shown, strict=True):
            summary = member["bill_summary"]
            assert row["outstanding_amount"] == summary["outstanding_amount"]
            assert [int(row[k]) for k in summary if k != "outstanding_amount"] == [
                v for k, v in summary.items() if k != "outstanding_amount"
            ]
    r2 = row_of(download(estate.admin, f"{m}/members/export.csv"), estate.residents[2].user_id)
    # water 3,000 + service 15,000 + their gate remote 6,500; diesel was cancelled
    figures = ("outstanding_count", "outstanding_amount", "overdue_count", "paid_count")
    assert [r2[k] for k in figures] == ["3", "24500.00", "1", "0"]


def test_the_transaction_export_is_the_ledger_list(estate: Estate) -> None:
    bills = build(estate)
    m = f"{base(estate)}/management"
    for params in (
        {},
        {"type": "deposit"},
        {"bill_id": bills["water"].pk},
        {"user_id": estate.residents[0].user_id, "status": "completed"},
    ):
        exported = download(estate.auditor, f"{m}/transactions/export.csv", **params)
        shown = listed(estate.auditor, f"{m}/transactions/", **params)
        assert [(r["id"], r["amount"], r["balance_after"]) for r in exported] == [
            (t["id"], t["amount"], t["balance_after"]) for t in shown
        ], params
    payments = download(estate.auditor, f"{m}/transactions/export.csv", type="bill_payment")
    assert sorted(r["amount"] for r in payments) == ["-3000.00", "-3000.00"]


def test_exports_are_read_in_chunks_each_decorated_once(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    """With chunks of 2 rows the file is the same, and the member summaries are read
    once per chunk: queries grow with rows / chunk size, never with rows."""
    build(estate)
    path = f"{base(estate)}/management/members/export.csv"
    whole = download(estate.admin, path)
    assert len(whole) == 6  # admin, treasurer, auditor, three residents

    def queries(chunk: int) -> tuple[list[dict[str, str]], int]:
        monkeypatch.setattr(exports, "CHUNK_SIZE", chunk)
        with CaptureQueriesContext(connection) as captured:
            rows = download(estate.admin, path)
        return rows, len(captured)

    one_chunk_rows, one_chunk = queries(1000)
    chunked_rows, chunked = queries(2)
    assert one_chunk_rows == chunked_rows == whole
    assert chunked - one_chunk == 2  # three chunks of two instead of one: two more summary reads


# Each count includes the export's read transaction — a savepoint and its release here,
# where the test already runs in a transaction (BEGIN and COMMIT in production) — and
# the SET LOCAL that plans its cursor for every row.
@pytest.mark.parametrize(
    ("suffix", "caller_role", "expected"),
    [
        # the user (token) with the caller's membership and its estate, the rows
        ("bills/export.csv", "auditor", 2 + 3),
        # ... and the bill, and the chunk's facts
        ("bills/{bill}/members/export.csv", "auditor", 4 + 3),
        # ... the rows, and the chunk's summaries
        ("members/export.csv", "admin", 3 + 3),
        ("transactions/export.csv", "treasurer", 2 + 3),
    ],
)
def test_an_export_costs_the_same_queries_for_one_row_and_for_many(
    suffix: str, caller_role: str, expected: int
) -> None:
    estate = make_estate(residents=1)
    bill = estate.wide_bill()
    caller = getattr(estate, caller_role)
    path = f"{base(estate)}/management/{suffix.format(bill=bill.pk)}"

    def count() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            rows = download(caller, path)
        return len(rows), len(captured)

    few_rows, first = count()
    for i in range(40):
        member = estate.add()
        estate.fund(member, "10.00")
        if i % 4 == 0:
            estate.wide_bill(title=f"Bill {i}")
    many_rows, second = count()
    assert many_rows > few_rows
    assert first == second == expected


def test_the_header_leaves_before_any_row_is_read() -> None:
    def rows() -> Any:
        raise AssertionError("no row may be read before the header is sent")
        yield []  # pragma: no cover

    chunks = csv_chunks(["a", "b"], rows())
    assert next(chunks) == b"a,b\r\n"


def test_rows_leave_in_blocks_not_one_write_per_row() -> None:
    rows = ([str(i), "x" * 100] for i in range(2000))
    blocks = list(csv_chunks(["n", "text"], rows, block_bytes=64 * 1024))
    assert len(blocks) == 1 + 4  # the header, then ~210 KB in four blocks
    assert b"".join(blocks).count(b"\r\n") == 2001


def test_an_export_needs_a_financial_permission_and_its_own_estate(estate: Estate) -> None:
    bills = build(estate)
    m = f"{base(estate)}/management"
    refused = api_as(estate.residents[0]).client.get(f"{m}/transactions/export.csv")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    other = make_estate()
    for path in (f"{m}/bills/export.csv", f"{base(other)}/management/bills/{bills['water'].pk}/members/export.csv"):
        response = api_as(other.admin).client.get(path)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    bad = api_as(estate.admin).client.get(f"{m}/bills/export.csv", {"due_before": "soon"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_error")


def test_each_block_tells_gunicorn_the_worker_is_still_working(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without it gunicorn's sync worker timeout (30 s) killed a 50,000-row export
    mid-file at data set L (docs/performance.md, "CSV exports")."""
    from levy.common import liveness

    beats: list[float] = []
    monkeypatch.setattr(liveness, "_notify", lambda: beats.append(1))
    rows = ([str(i), "x" * 100] for i in range(2000))
    blocks = list(csv_chunks(["n", "text"], rows, block_bytes=64 * 1024))
    assert len(beats) == len(blocks) - 2  # every full block; not the header nor the last, partial one
    monkeypatch.setattr(liveness, "_notify", None)
    liveness.still_working()  # outside gunicorn: nothing registered, nothing happens
