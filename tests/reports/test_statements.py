"""Statements: the figures come from the ledger and add up to the wallet's balance."""

from __future__ import annotations

import csv
import datetime
import io
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from levy.access import access_membership
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.services import bill_acknowledge, bill_cancel
from levy.common.errors import InsufficientFundsError
from levy.reports.csvfiles import STATEMENT_HEADER, csv_lines, statement_rows, text
from levy.reports.pdf import render_statement
from levy.reports.selectors import member_statement
from levy.wallets.models import Transaction, TransactionStatus, Wallet
from tests.api.conftest import api_as, base
from tests.conftest import Estate, access, make_estate, new_key
from tests.reports.conftest import queries_of_download

pytestmark = pytest.mark.django_db


def at(day: datetime.date, hour: int = 12) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour)))


def backdate(tx: Transaction, moment: datetime.datetime) -> None:
    """Place an entry in the past. The ledger's trigger refuses any change to an entry's
    time; the test moves it in replica mode (triggers off) for this one statement."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE wallets_transaction SET created_at = %s WHERE id = %s", [moment, tx.pk])
        cursor.execute("SET session_replication_role = DEFAULT")


def history(estate: Estate) -> tuple[Any, list[Transaction]]:
    """A member's ledger over three months: credits, payments, a failed payment, a
    refund of a cancelled bill."""
    member = estate.residents[0]
    entries = [estate.fund(member, "50000.00")]
    backdate(entries[0], at(datetime.date(2026, 9, 20)))
    for day, amount in ((datetime.date(2026, 10, 3), "15000.00"), (datetime.date(2026, 11, 2), "7000.25")):
        bill = estate.wide_bill(amount=Decimal(amount))
        bill_acknowledge(access=access(member), bill=bill)
        entries.append(bill_pay(access=access(member), bill=bill, idempotency_key=new_key()))
        backdate(entries[-1], at(day))
    cancelled = estate.wide_bill(amount=Decimal("1000.00"))
    bill_acknowledge(access=access(member), bill=cancelled)
    payment = bill_pay(access=access(member), bill=cancelled, idempotency_key=new_key())
    backdate(payment, at(datetime.date(2026, 11, 10)))
    bill_cancel(access=access(estate.admin), bill=cancelled, reason="Issued twice")
    refund = bill_payment_refund(access=access(estate.treasurer), payment=payment, idempotency_key=new_key())
    backdate(refund, at(datetime.date(2026, 11, 11)))
    top_up = estate.fund(member, "2000.00")
    backdate(top_up, at(datetime.date(2026, 11, 30), hour=23))
    entries += [payment, refund, top_up]
    # A failed attempt moves nothing and is on no statement.
    big = estate.wide_bill(amount=Decimal("900000.00"))
    bill_acknowledge(access=access(member), bill=big)
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(member), bill=big, idempotency_key=new_key())
    return member, entries


def test_opening_entries_and_closing_add_up_to_the_wallets_balance(estate: Estate) -> None:
    member, entries = history(estate)
    wallet = Wallet.objects.get(user=member.user)
    assert wallet.balance == Decimal("29999.75")

    november = member_statement(
        access=access(member), membership=member, start=datetime.date(2026, 11, 1), end=datetime.date(2026, 11, 30)
    )
    assert november.opening_balance == Decimal("35000.00")  # 50,000 in September, 15,000 paid in October
    assert [(line.reference, line.amount, line.balance) for line in november.lines] == [
        (entries[2].reference, Decimal("-7000.25"), Decimal("27999.75")),
        (entries[3].reference, Decimal("-1000.00"), Decimal("26999.75")),
        (entries[4].reference, Decimal("1000.00"), Decimal("27999.75")),
        (entries[5].reference, Decimal("2000.00"), Decimal("29999.75")),  # 23:00 on the 30th is still November
    ]
    assert (november.money_in, november.money_out) == (Decimal("3000.00"), Decimal("8000.25"))
    assert november.closing_balance == Decimal("29999.75") == wallet.balance
    assert november.opening_balance + sum(line.amount for line in november.lines) == november.closing_balance
    # Each running balance is the balance the ledger recorded with that entry.
    recorded = dict(Transaction.objects.filter(wallet=wallet).values_list("reference", "balance_after"))
    assert all(line.balance == recorded[line.reference] for line in november.lines)

    # Consecutive periods chain: one's closing balance is the next one's opening.
    earlier = member_statement(
        access=access(member), membership=member, start=datetime.date(2026, 9, 1), end=datetime.date(2026, 10, 31)
    )
    assert earlier.opening_balance == Decimal("0.00")
    assert earlier.closing_balance == november.opening_balance
    assert [line.description for line in earlier.lines] == ["Deposit: cash", f"Payment: {entries[1].bill.title}"]
    everything = member_statement(
        access=access(member), membership=member, start=datetime.date(2000, 1, 1), end=datetime.date(2999, 12, 31)
    )
    assert (
        len(everything.lines) == Transaction.objects.filter(wallet=wallet, status=TransactionStatus.COMPLETED).count()
    )
    assert everything.closing_balance == wallet.balance


def test_the_csv_is_one_table_whose_amounts_sum_to_closing_minus_opening(estate: Estate) -> None:
    member, entries = history(estate)
    statement = member_statement(
        access=access(member), membership=member, start=datetime.date(2026, 11, 1), end=datetime.date(2026, 11, 30)
    )
    rows = list(csv.DictReader(io.StringIO("".join(csv_lines(STATEMENT_HEADER, statement_rows(statement))))))
    assert rows[0] == {
        "date": "2026-11-01",
        "reference": "",
        "type": "opening_balance",
        "description": "Opening balance",
        "bill_reference": "",
        "amount": "",
        "balance": "35000.00",
        "currency": "NGN",
    }
    assert rows[-1]["type"] == "closing_balance" and rows[-1]["balance"] == "29999.75"
    middle = rows[1:-1]
    assert [r["amount"] for r in middle] == ["-7000.25", "-1000.00", "1000.00", "2000.00"]
    assert [r["type"] for r in middle] == ["bill_payment", "bill_payment", "refund", "deposit"]
    assert middle[0]["bill_reference"] == Transaction.objects.get(pk=entries[2].pk).bill.reference
    total = sum(Decimal(r["amount"]) for r in middle)
    assert Decimal(rows[0]["balance"]) + total == Decimal(rows[-1]["balance"])


def test_an_empty_wallet_and_an_empty_period_still_make_a_statement(estate: Estate) -> None:
    member = estate.residents[1]
    statement = member_statement(
        access=access(member), membership=member, start=timezone.localdate(), end=timezone.localdate()
    )
    assert (statement.opening_balance, statement.lines, statement.closing_balance) == (
        Decimal("0.00"),
        [],
        Decimal("0.00"),
    )
    assert render_statement(statement).startswith(b"%PDF-")


def test_a_long_statement_flows_over_pages(estate: Estate) -> None:
    member = estate.residents[0]
    for _ in range(120):
        estate.fund(member, "1.00")
    statement = member_statement(
        access=access(member), membership=member, start=timezone.localdate(), end=timezone.localdate()
    )
    pdf = render_statement(statement)
    assert b"/Count 4" in pdf or b"/Count 3" in pdf
    assert statement.closing_balance == Decimal("120.00")


def test_free_text_cannot_become_a_spreadsheet_formula() -> None:
    assert text('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert text("+2348012345678") == "'+2348012345678"
    assert text("Service charge") == "Service charge"
    assert text(None) == ""


# --- over HTTP ------------------------------------------------------------------------------


def test_a_member_downloads_their_statement(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "500.00")
    today = timezone.localdate().isoformat()
    csv_response = api_as(member).client.get(f"{base(estate)}/wallet/statement.csv", {"start": today, "end": today})
    assert csv_response.status_code == 200
    assert csv_response["Content-Type"] == "text/csv; charset=utf-8"
    assert csv_response["Content-Disposition"] == f'attachment; filename="statement-{today}-{today}.csv"'
    rows = list(csv.reader(io.StringIO(csv_response.content.decode())))
    assert rows[0] == STATEMENT_HEADER
    assert [r[2] for r in rows[1:]] == ["opening_balance", "deposit", "closing_balance"]
    assert rows[-1][6] == "500.00"
    pdf_response = api_as(member).client.get(f"{base(estate)}/wallet/statement.pdf")
    assert pdf_response.status_code == 200 and pdf_response["Content-Type"] == "application/pdf"
    first = timezone.localdate().replace(day=1).isoformat()
    assert pdf_response["Content-Disposition"] == f'attachment; filename="statement-{first}-{today}.pdf"'


def test_managers_download_any_members_statement(estate: Estate) -> None:
    member = estate.residents[0]
    estate.fund(member, "500.00")
    path = f"{base(estate)}/management/members/{member.user_id}/statement.csv"
    for staff in (estate.admin, estate.treasurer, estate.auditor):
        response = api_as(staff).client.get(path)
        assert response.status_code == 200
        assert list(csv.reader(io.StringIO(response.content.decode())))[-1][6] == "500.00"
    refused = api_as(estate.residents[1]).client.get(path)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    other = make_estate()
    missing = api_as(other.admin).client.get(f"{base(other)}/management/members/{member.user_id}/statement.pdf")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-12-05", "end": "2026-12-01"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"end": "0001-01-01"}, "end"),
        ({"start": "9999-12-31"}, "start"),
    ],
)
def test_a_bad_period_is_a_validation_error(estate: Estate, params: dict[str, str], field: str) -> None:
    response = api_as(estate.residents[0]).client.get(f"{base(estate)}/wallet/statement.pdf", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]["fields"]


@pytest.mark.parametrize("suffix", ["pdf", "csv"])
@pytest.mark.parametrize("who", ["member", "staff"])
def test_a_statement_costs_the_same_queries_however_long_it_is(estate: Estate, suffix: str, who: str) -> None:
    member = estate.residents[0]
    estate.fund(member, "1.00")
    if who == "member":
        caller, path = member, f"{base(estate)}/wallet/statement.{suffix}"
    else:
        caller, path = estate.auditor, f"{base(estate)}/management/members/{member.user_id}/statement.{suffix}"

    first = queries_of_download(caller, path)
    for _ in range(30):
        estate.fund(member, "1.00")
    # the user (token) with the caller's membership and its estate, [the member asked
    # for,] the wallet, the opening balance, the period's entries with their bills
    assert queries_of_download(caller, path) == first == (4 if who == "member" else 5)


def test_the_access_helper_finds_former_members_too(estate: Estate) -> None:
    former = estate.residents[2]
    former.active = False
    former.deactivated_at = timezone.now()
    former.save()
    assert access_membership(access(estate.admin), former.user_id) == former
