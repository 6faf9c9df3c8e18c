"""The list selectors the API and the pages share: filters, scoping, permission, and one
query for a page's decoration."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from levy.billing.models import BillCategory, DisputeStatus
from levy.billing.payments import bill_pay
from levy.billing.selectors import (
    BillFilters,
    BillMemberFilters,
    DisputeFilters,
    MemberBillFilters,
    MemberFilters,
    bill_list,
    bill_member_list,
    dispute_list,
    member_bill_list,
    member_list,
)
from levy.billing.services import bill_acknowledge, bill_dispute
from levy.billing.status import BillStatus
from levy.common.errors import PermissionDeniedError
from levy.estates.permissions import Role
from levy.wallets.models import TransactionType
from levy.wallets.selectors import TransactionFilters, member_transaction_list, transaction_list
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db


def page_of(listing, size: int = 50):  # type: ignore[no-untyped-def]
    return list(listing.page(list(listing.rows.order_by(*listing.ordering)[:size])))


def test_bill_list_filters_and_scope(estate: Estate, other_estate: Estate) -> None:
    wide = estate.wide_bill(title="Water", category=BillCategory.WATER)
    own = estate.user_bill(estate.residents[0], title="Gate remote")
    other_estate.wide_bill(title="Water")
    staff = access(estate.auditor)

    def titles(**filters: object) -> list[str]:
        return sorted(b.title for b in bill_list(access=staff, filters=BillFilters(**filters)).rows)  # type: ignore[arg-type]

    assert titles() == ["Gate remote", "Water"]
    assert titles(scope="cluster") == ["Water"]
    assert titles(scope="user") == ["Gate remote"]
    assert titles(user_id=estate.residents[0].user_id) == ["Gate remote"]
    assert titles(category=BillCategory.WATER) == ["Water"]
    assert titles(search="remote") == ["Gate remote"]
    assert titles(search=wide.reference) == ["Water"]
    assert titles(cancelled=True) == []
    bill = bill_list(access=staff, filters=BillFilters(search=own.reference)).rows.get()
    assert (bill.stat_eligible, bill.stat_outstanding, bill.stat_paid) == (1, 1, 0)


def test_lists_refuse_a_resident_and_scope_to_the_estate(estate: Estate) -> None:
    resident = access(estate.residents[0])
    for read in (bill_list, member_list, dispute_list, transaction_list):
        with pytest.raises(PermissionDeniedError):
            read(access=resident)
    staff = access(make_estate(residents=0).admin)
    assert member_list(access=staff).rows.count() == 3  # its admin, treasurer and auditor


def test_member_list_filters_and_summaries(estate: Estate) -> None:
    bill = estate.wide_bill(amount=Decimal("100.00"))
    first, second, third = estate.residents
    bill_acknowledge(access=access(first), bill=bill)
    estate.fund(first, "100.00")
    bill_pay(access=access(first), bill=bill, idempotency_key=new_key())
    staff = access(estate.admin)
    residents = member_list(access=staff, filters=MemberFilters(role=Role.RESIDENT))
    assert residents.ordering == ("-joined_at", "-id")
    with CaptureQueriesContext(connection) as queries:
        page = page_of(residents)
    assert len(queries) == 2  # the page, and its summaries
    summaries = {m.user_id: (m.sum_outstanding_count, m.sum_paid_count) for m in page}
    assert summaries == {first.user_id: (0, 1), second.user_id: (1, 0), third.user_id: (1, 0)}
    found = member_list(access=staff, filters=MemberFilters(search=second.user.email.upper()))
    assert [m.user_id for m in found.rows] == [second.user_id]
    assert member_list(access=staff, filters=MemberFilters(has_overdue=True)).rows.count() == 0


def test_bill_member_list_by_status(estate: Estate) -> None:
    bill = estate.wide_bill()
    first, second, _ = estate.residents
    bill_acknowledge(access=access(first), bill=bill)
    bill_dispute(access=access(second), bill=bill, reason="Not mine")
    everyone = page_of(bill_member_list(bill=bill))
    assert {m.user_id: m.status for m in everyone} == {
        m.user_id: s
        for m, s in zip(
            estate.residents, (BillStatus.ACKNOWLEDGED, BillStatus.DISPUTED, BillStatus.PENDING), strict=True
        )
    }
    disputed = bill_member_list(bill=bill, filters=BillMemberFilters(status=BillStatus.DISPUTED))
    assert [m.user_id for m in page_of(disputed)] == [second.user_id]
    open_disputes = dispute_list(access=access(estate.admin), filters=DisputeFilters(status=DisputeStatus.OPEN))
    assert [d.user_id for d in open_disputes.rows] == [second.user_id]
    assert (
        dispute_list(access=access(estate.admin), filters=DisputeFilters(status=DisputeStatus.UPHELD)).rows.count() == 0
    )


def test_member_bill_list_and_ledger(estate: Estate) -> None:
    water = estate.wide_bill(category=BillCategory.WATER, amount=Decimal("40.00"))
    estate.wide_bill(category=BillCategory.SECURITY)
    member = estate.residents[0]
    me = access(member)
    bill_acknowledge(access=me, bill=water)
    estate.fund(member, "40.00")
    bill_pay(access=me, bill=water, idempotency_key=new_key())
    mine = page_of(member_bill_list(access=me, filters=MemberBillFilters(category=BillCategory.WATER)))
    assert [(b.pk, b.status, b.can_pay) for b in mine] == [(water.pk, BillStatus.PAID, False)]
    paid = member_bill_list(access=me, filters=MemberBillFilters(status=BillStatus.PAID))
    assert [b.pk for b in paid.rows] == [water.pk]
    assert [t.type for t in member_transaction_list(access=me).rows] == [
        TransactionType.BILL_PAYMENT,
        TransactionType.DEPOSIT,
    ]
    payments = transaction_list(
        access=access(estate.treasurer), filters=TransactionFilters(type=TransactionType.BILL_PAYMENT)
    )
    assert [(t.payer_id, t.amount) for t in payments.rows] == [(member.user_id, Decimal("-40.00"))]
    assert list(member_bill_list(access=access(estate.admin)).rows) == []  # not a resident: not billed
