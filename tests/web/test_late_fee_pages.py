"""The late-fee rule on the new-bill form (none, a fixed amount, a percentage; grace
days), checked by the bill service with its messages next to each field, and the rule
and the fees charged on the manager's bill page."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest

from levy.billing.late_fees import late_fees_issue_due
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge
from levy.web.format import estate_date
from tests.conftest import Estate, access, committed, new_key
from tests.web.conftest import browser_as, estate_url

pytestmark = pytest.mark.django_db

DUE = estate_today() + datetime.timedelta(days=20)


def _new_bill(**overrides: str) -> dict[str, str]:
    return {
        "title": "Service charge",
        "category": "service_charge",
        "amount": "15000",
        "due_date": DUE.isoformat(),
        "target": "estate",
        "idempotency_key": new_key("web-bill"),
        **overrides,
    }


def _post(estate: Estate, **overrides: str) -> Any:
    return browser_as(estate.admin).post(estate_url(estate, "bills/new/"), _new_bill(**overrides))


def test_a_fixed_late_fee_is_saved_and_shown_on_the_bill(estate: Estate) -> None:
    response = _post(estate, late_fee_kind="fixed", late_fee_value="2000", late_fee_grace_days="7")
    assert response.status_code == 302
    bill = Bill.objects.get(cluster=estate.cluster)
    assert (bill.late_fee_kind, bill.late_fee_value, bill.late_fee_grace_days) == ("fixed", Decimal("2000.00"), 7)
    page = browser_as(estate.auditor).get(response["Location"]).content.decode()
    assert "<dt>Late fee</dt><dd>₦2,000.00 after 7 days of grace</dd>" in page
    starts = DUE + datetime.timedelta(days=8)
    assert f"From {estate_date(starts)}, each member who has not paid" in page


def test_a_percentage_shows_what_each_member_would_pay(estate: Estate) -> None:
    response = _post(estate, late_fee_kind="percent", late_fee_value="2.5", late_fee_grace_days="0")
    assert response.status_code == 302
    bill = Bill.objects.get(cluster=estate.cluster)
    assert (bill.late_fee_kind, bill.late_fee_value, bill.late_fee_grace_days) == ("percent", Decimal("2.50"), 0)
    page = browser_as(estate.admin).get(response["Location"]).content.decode()
    assert "<dt>Late fee</dt><dd>2.5% of the amount (₦375.00) after 0 days of grace</dd>" in page


def test_no_late_fee_leaves_out_what_was_typed_before_choosing_it(estate: Estate) -> None:
    assert _post(estate, late_fee_kind="", late_fee_value="500", late_fee_grace_days="3").status_code == 302
    bill = Bill.objects.get(cluster=estate.cluster)
    assert (bill.late_fee_kind, bill.late_fee_value, bill.late_fee_grace_days) == ("", None, None)
    page = browser_as(estate.admin).get(estate_url(estate, f"bills/{bill.pk}/")).content.decode()
    assert "<dt>Late fee</dt><dd>None</dd>" in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"late_fee_kind": "fixed", "late_fee_grace_days": "3"}, "late_fee_value", "Enter the fee&#x27;s amount."),
        (
            {"late_fee_kind": "percent", "late_fee_grace_days": "3"},
            "late_fee_value",
            "Enter the percentage of the bill&#x27;s amount",
        ),
        (
            {"late_fee_kind": "fixed", "late_fee_value": "1,000", "late_fee_grace_days": "3"},
            "late_fee_value",
            "Enter the amount as digits with at most 2 decimal places",
        ),
        (
            {"late_fee_kind": "percent", "late_fee_value": "0", "late_fee_grace_days": "3"},
            "late_fee_value",
            "Enter a percentage above 0, at most 100",
        ),
        (
            {"late_fee_kind": "percent", "late_fee_value": "150", "late_fee_grace_days": "3"},
            "late_fee_value",
            "A percentage is at most 100.",
        ),
        ({"late_fee_kind": "fixed", "late_fee_value": "500"}, "late_fee_grace_days", "Enter a whole number of days"),
        (
            {"late_fee_kind": "fixed", "late_fee_value": "500", "late_fee_grace_days": "400"},
            "late_fee_grace_days",
            "Enter a whole number of days from 0 to 366.",
        ),
        (
            {"late_fee_kind": "fixed", "late_fee_value": "500", "late_fee_grace_days": "a week"},
            "late_fee_grace_days",
            "Enter a whole number of days from 0 to 366.",
        ),
        ({"late_fee_kind": "daily", "late_fee_value": "5", "late_fee_grace_days": "3"}, "late_fee_kind", "Select a"),
    ],
)
def test_a_bad_rule_is_explained_next_to_its_field(
    estate: Estate, fields: dict[str, str], field: str, message: str
) -> None:
    response = _post(estate, **fields)
    assert response.status_code == 400
    html = response.content.decode()
    error = html.split(f'id="id_{field}_error">', 1)[1].split("</p>", 1)[0]
    assert message in error, (fields, error)
    # What was typed comes back, and the choice stays chosen.
    if fields.get("late_fee_value"):
        assert f'value="{fields["late_fee_value"]}"' in html
    if fields["late_fee_kind"] in ("fixed", "percent"):
        assert f'value="{fields["late_fee_kind"]}" checked' in html
    assert not Bill.objects.filter(cluster=estate.cluster).exists()


def test_the_bill_page_says_how_many_were_charged(estate: Estate) -> None:
    response = _post(estate, late_fee_kind="fixed", late_fee_value="500", late_fee_grace_days="3")
    bill = Bill.objects.get(cluster=estate.cluster)
    payer = estate.residents[0]
    with committed():
        estate.fund(payer, "15000")
        bill_acknowledge(access=access(payer), bill=bill)
        bill_pay(access=access(payer), bill=bill, idempotency_key=new_key("pay"))
        result = late_fees_issue_due(DUE + datetime.timedelta(days=4))
    assert result["fees"] == 2
    browser = browser_as(estate.admin)
    page = browser.get(response["Location"]).content.decode()
    assert "2 members owe ₦500.00 more, each as a bill of its own." in page
    assert "Late fees charged" in page and "From " not in page
    fee = Bill.objects.filter(late_fee_of=bill).first()
    assert fee is not None
    fee_page = browser.get(estate_url(estate, f"bills/{fee.pk}/")).content.decode()
    assert f'The late fee of <a href="{estate_url(estate, f"bills/{bill.pk}/")}">{bill.reference}' in fee_page
    assert "<dt>Late fee</dt>" not in fee_page  # a fee carries no rule of its own


def test_a_run_that_charged_nobody_says_so(estate: Estate) -> None:
    response = _post(estate, late_fee_kind="fixed", late_fee_value="500", late_fee_grace_days="0")
    bill = Bill.objects.get(cluster=estate.cluster)
    with committed():
        for member in estate.residents:
            estate.fund(member, "15000")
            bill_acknowledge(access=access(member), bill=bill)
            bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))
        late_fees_issue_due(DUE + datetime.timedelta(days=1))
    bill.refresh_from_db()
    assert bill.late_fees_issued_at is not None
    page = browser_as(estate.admin).get(response["Location"]).content.decode()
    assert "every member had paid or disputed, so no late fee was charged." in page
