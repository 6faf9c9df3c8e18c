"""A bill's late-fee rule through the API, and the late-fee bills as members and
managers see them."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from levy.billing.late_fees import late_fees_issue_due
from levy.billing.models import Bill
from levy.billing.selectors import estate_today
from tests.api.conftest import api_as, assert_error, base
from tests.conftest import Estate

pytestmark = pytest.mark.django_db

DUE = estate_today() + datetime.timedelta(days=10)


def body(**overrides: Any) -> dict[str, Any]:
    values = {
        "title": "Service charge",
        "category": "service_charge",
        "amount": "15000.00",
        "due_date": DUE.isoformat(),
        "late_fee_kind": "percent",
        "late_fee_value": "2.5",
        "late_fee_grace_days": 5,
    }
    values.update(overrides)
    return values


def test_a_bill_with_a_late_fee_rule_and_its_fees(estate: Estate) -> None:
    admin = api_as(estate.admin)
    created = admin.post(f"{base(estate)}/management/bills/", body())
    assert created.status_code == 201, created.json()
    data = created.json()
    assert (
        data["late_fee_kind"],
        data["late_fee_value"],
        data["late_fee_grace_days"],
        data["late_fees_issued_at"],
        data["late_fee_of_id"],
    ) == ("percent", "2.50", 5, None, None)

    late_fees_issue_due(DUE + datetime.timedelta(days=6))
    bill = Bill.objects.get(pk=data["id"])
    member = estate.residents[0]
    fee = Bill.objects.get(late_fee_of=bill, user_id=member.user_id)

    mine = api_as(member).get(f"{base(estate)}/bills/").json()["results"]
    assert [(b["id"], b["late_fee_of_id"], b["amount"], b["is_cluster_wide"]) for b in mine] == [
        (str(fee.pk), data["id"], "375.00", False),
        (data["id"], None, "15000.00", True),
    ]
    managed = admin.get(f"{base(estate)}/management/bills/{data['id']}/").json()
    assert managed["late_fees_issued_at"] is not None
    listed = admin.get(f"{base(estate)}/management/bills/", scope="user").json()["results"]
    assert sorted(b["late_fee_of_id"] for b in listed) == [data["id"]] * 3
    assert {b["title"] for b in listed} == {"Late fee: Service charge"}


def test_a_bad_rule_is_refused_field_by_field(estate: Estate) -> None:
    admin = api_as(estate.admin)
    url = f"{base(estate)}/management/bills/"
    assert_error(admin.post(url, body(late_fee_kind="daily")), 400, "validation_error", ("late_fee_kind",))
    assert_error(admin.post(url, body(late_fee_value="101")), 400, "validation_error", ("late_fee_value",))
    assert_error(admin.post(url, body(late_fee_grace_days=None)), 400, "validation_error", ("late_fee_grace_days",))
    assert_error(admin.post(url, body(late_fee_grace_days=400)), 400, "validation_error", ("late_fee_grace_days",))
    response = admin.post(url, body(late_fee_kind="", late_fee_value="5"))
    assert_error(response, 400, "validation_error", ("late_fee_value",))
    assert not Bill.objects.exists()
    plain = admin.post(url, body(late_fee_kind="", late_fee_value=None, late_fee_grace_days=None))
    assert plain.status_code == 201, plain.json()
    assert (plain.json()["late_fee_kind"], plain.json()["late_fee_value"]) == ("", None)
