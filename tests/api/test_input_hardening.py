"""Input the API used to mishandle (issue 15, items 1, 6 and 8), sent over HTTP: bodies
over the upload limit, forms with too many fields, errors raised outside the views,
bodies that were meant as JSON, unbounded due dates and names, loosely parsed amounts.
Each refusal is in the error shape, and leaves the database as it was."""

from __future__ import annotations

import datetime
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from levy.billing.models import Bill
from levy.billing.selectors import estate_today
from levy.billing.validation import latest_due_date
from levy.estates.models import Membership
from levy.wallets.models import Transaction
from tests.api.conftest import api_as, assert_error, base
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db

BIG = 2_700_000  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)


def due(days: int = 30) -> str:
    return (estate_today() + datetime.timedelta(days=days)).isoformat()


def bill_body(**overrides: Any) -> dict[str, Any]:
    return {"title": "Water", "category": "water", "amount": "2500.00", "due_date": due(), **overrides}


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- item 1: bodies over the limit, too many fields ------------------------------------------------


def test_an_oversized_sign_in_is_413(db: None, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps({"email": "someone@example.test", "password": "x" * BIG})
    before = db_snapshot()
    response = APIClient().post("/api/v1/auth/token/", data=body, content_type="application/json")
    assert_error(response, 413, "request_too_large")
    assert db_snapshot() == before
    no_traceback(caplog)
    assert "request refused: RequestDataTooBig" in caplog.text


@pytest.mark.parametrize("endpoint", ["bills", "members", "dispute", "pay", "credit"])
def test_an_oversized_body_is_413_on_every_write(
    estate: Estate, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    me = estate.residents[0]
    bill = estate.wide_bill()
    caller, path = {
        "bills": (estate.admin, f"{base(estate)}/management/bills/"),
        "members": (estate.admin, f"{base(estate)}/management/members/"),
        "dispute": (me, f"{base(estate)}/bills/{bill.pk}/dispute/"),
        "pay": (me, f"{base(estate)}/bills/{bill.pk}/pay/"),
        "credit": (estate.treasurer, f"{base(estate)}/management/wallets/{me.user_id}/credit/"),
    }[endpoint]
    body = json.dumps({"reason": "x" * BIG, "title": "x", "email": "a@b.test", "amount": "1.00"})
    before = db_snapshot()
    response = api_as(caller).client.post(
        path, data=body, content_type="application/json", headers={"Idempotency-Key": new_key()}
    )
    assert_error(response, 413, "request_too_large")
    assert db_snapshot() == before
    no_traceback(caplog)


def test_an_import_with_too_many_form_fields_is_400(estate: Estate, caplog: pytest.LogCaptureFixture) -> None:
    fields = {f"field{i}": "x" for i in range(1500)}
    before = db_snapshot()
    response = api_as(estate.admin).client.post(f"{base(estate)}/management/members/import/", fields)
    body = assert_error(response, 400, "validation_error")
    assert body["error"]["message"] == "The form has more fields than this server accepts."
    assert db_snapshot() == before
    no_traceback(caplog)


# --- item 8: errors outside the views, bodies that are not JSON, bounds ----------------------------


def test_an_unknown_api_path_is_json(estate: Estate) -> None:
    response = api_as(estate.admin).client.get("/api/v1/no-such-thing/")
    body = assert_error(response, 404, "not_found")
    assert body["error"] == {"code": "not_found", "message": "Not found.", "details": {}}
    # Outside /api/ the admin's HTML pages are unchanged.
    page = APIClient().get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_a_bad_host_is_json_under_api(db: None, caplog: pytest.LogCaptureFixture) -> None:
    response = APIClient().get("/api/v1/me/", HTTP_HOST="evil.example")
    assert_error(response, 400, "invalid_host")
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("debug", [False, True], ids=["production", "demo"])
def test_a_post_without_the_trailing_slash_is_a_json_404_naming_the_path(estate: Estate, debug: bool) -> None:
    with override_settings(DEBUG=debug):
        response = api_as(estate.admin).client.post(
            f"{base(estate)}/management/bills", data=json.dumps(bill_body()), content_type="application/json"
        )
    body = assert_error(response, 404, "not_found")
    assert body["error"]["details"] == {"path": f"{base(estate)}/management/bills/"}
    assert Bill.objects.count() == 0
    # A GET is still redirected.
    assert api_as(estate.admin).client.get(f"{base(estate)}/management/bills").status_code == 301


def test_a_json_body_sent_as_a_form_says_it_was_not_json(estate: Estate) -> None:
    response = api_as(estate.admin).client.post(
        f"{base(estate)}/management/bills/",
        data=json.dumps(bill_body()),
        content_type="application/x-www-form-urlencoded",
    )
    body = assert_error(response, 400, "validation_error")
    assert body["error"]["message"].startswith("The body is not JSON")
    assert "Content-Type: application/json" in body["error"]["message"]
    assert Bill.objects.count() == 0


def test_a_due_date_far_in_the_future_is_refused(estate: Estate) -> None:
    api = api_as(estate.admin)
    for far in ("9999-12-31", (latest_due_date() + datetime.timedelta(days=1)).isoformat()):
        response = api.post(f"{base(estate)}/management/bills/", bill_body(due_date=far))
        body = assert_error(response, 400, "validation_error", ("due_date",))
        assert body["error"]["details"]["fields"]["due_date"] == ["The due date must be within 5 years from today."]
    assert Bill.objects.count() == 0
    edge = api.post(f"{base(estate)}/management/bills/", bill_body(due_date=latest_due_date().isoformat()))
    assert edge.status_code == 201, edge.content


@pytest.mark.parametrize("name", ["", "   "])
def test_a_member_needs_a_name(estate: Estate, name: str) -> None:
    before = Membership.objects.count()
    response = api_as(estate.admin).post(
        f"{base(estate)}/management/members/", {"email": "nameless@example.test", "name": name}
    )
    assert_error(response, 400, "validation_error", ("name",))
    assert Membership.objects.count() == before


# --- item 6: amounts ------------------------------------------------------------------------------

LOOSE = [
    "1e2",
    "1_000",
    "\u0661\u0660\u0660",
    "\uff11\uff10\uff10",
    " 100",
    "100 ",
    "+100",
    "-5",
    "100.001",
    "1,000",
    "",
]


@pytest.mark.parametrize("amount", LOOSE)
def test_a_loose_bill_amount_is_refused(estate: Estate, amount: str) -> None:
    response = api_as(estate.admin).post(f"{base(estate)}/management/bills/", bill_body(amount=amount))
    assert_error(response, 400, "validation_error", ("amount",))
    assert Bill.objects.count() == 0


@pytest.mark.parametrize("amount", LOOSE)
def test_a_loose_credit_amount_is_refused(estate: Estate, amount: str) -> None:
    me = estate.residents[0]
    response = api_as(estate.treasurer).post(
        f"{base(estate)}/management/wallets/{me.user_id}/credit/", {"amount": amount}, key=new_key()
    )
    assert_error(response, 400, "validation_error", ("amount",))
    assert Transaction.objects.count() == 0


@pytest.mark.parametrize(("amount", "stored"), [("100", "100.00"), ("100.5", "100.50"), ("0.01", "0.01")])
def test_plain_amounts_are_accepted(estate: Estate, amount: str, stored: str) -> None:
    response = api_as(estate.admin).post(f"{base(estate)}/management/bills/", bill_body(amount=amount))
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == stored
    assert Bill.objects.get().amount == Decimal(stored)


def test_a_currency_without_minor_units_takes_whole_amounts(db: None) -> None:
    estate = make_estate(currency="XOF")
    api = api_as(estate.admin)
    refused = api.post(f"{base(estate)}/management/bills/", bill_body(amount="2500.50"))
    body = assert_error(refused, 400, "validation_error", ("amount",))
    assert body["error"]["details"]["fields"]["amount"] == [
        'Enter the amount in whole units, digits only, e.g. "15000".'
    ]
    assert Bill.objects.count() == 0
    assert api.post(f"{base(estate)}/management/bills/", bill_body(amount="2500")).status_code == 201
    assert access(estate.admin).cluster.currency == "XOF"
