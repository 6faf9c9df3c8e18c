"""My bills' groups: the fixed statement of ``member_bill_groups`` (PostgreSQL) finds the
same bills, counts, order and statuses as its reference in Python, for every
combination of facts, ties in due date and creation, a cut at ``max_owing``, each group
expanded, and the settled list walked page by page."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from levy.billing.models import Bill
from levy.billing.selectors import estate_today, member_bill_groups, member_bill_list
from levy.billing.selectors.groups import GroupsAsked, _member_bill_groups_in_python, _member_bill_groups_in_sql
from levy.billing.status import BillStatus
from levy.estates.access import access_cluster
from levy.estates.models import Membership
from tests.billing.test_status import _build, _set_member_facts, all_member_fact_combos
from tests.conftest import Estate

pytestmark = pytest.mark.django_db

GROUPS = {
    "to-pay": (BillStatus.PENDING.value, BillStatus.ACKNOWLEDGED.value),
    "overdue": (BillStatus.OVERDUE.value,),
    "disputed": (BillStatus.DISPUTED.value,),
}
SETTLED = (BillStatus.PAID.value, BillStatus.WAIVED.value, BillStatus.CANCELLED.value)
SHOWN_NAMES = ("pk", "title", "amount", "status", "acknowledged_at", "paid_at", "can_pay")


def _seen(found: Any) -> dict[str, Any]:
    def bills(listed: list[Bill]) -> list[dict[str, Any]]:
        return [{n: getattr(b, n) for n in SHOWN_NAMES} for b in listed]

    return {
        "owing": found.owing,
        "groups": {key: (total, bills(listed)) for key, (total, listed) in found.groups.items()},
        "settled": bills(found.settled),
    }


def _estate_with_ties() -> tuple[Estate, datetime.date, list[Membership]]:
    """The sixteen combinations of facts on four bills (cancelled x past due), and more
    bills sharing a due date and an instant of creation (due today, past due, due
    soon), with those facts on every other one."""
    combos = all_member_fact_combos()
    estate, today, _, members = _build(combos)
    same = timezone.now()
    for n in range(6):
        bill = estate.wide_bill(title=f"Tie {n}")
        due = today + datetime.timedelta(days=(3, -2, 0)[n % 3])
        Bill.objects.filter(pk=bill.pk).update(created_at=same, due_date=due)
        for member, combo in zip(members, combos, strict=True):
            if n % 2 == 0:
                _set_member_facts(estate, bill, member, combo)
    estate.user_bill(members[0], title="Only the first member's")
    return estate, today, members


def test_the_fixed_statement_groups_the_bills_as_the_reference_does() -> None:
    assert connection.vendor == "postgresql"
    _, today, members = _estate_with_ties()
    checked = 0
    for member, (shown, expanded, max_owing, size) in itertools.product(
        members, [(1, None, 200, 1), (2, "to-pay", 200, 2), (1, "overdue", 3, 3), (5, "disputed", 1, 10)]
    ):
        after = None
        for _ in range(40):
            ask = GroupsAsked(member, GROUPS, SETTLED, shown, expanded, max_owing, after, size, today)
            fixed, reference = _member_bill_groups_in_sql(ask), _member_bill_groups_in_python(ask)
            assert _seen(fixed) == _seen(reference), (member, shown, expanded, max_owing, after)
            checked += 1
            if len(fixed.settled) <= size:
                break
            last = fixed.settled[size - 1]
            after = (last.created_at, last.pk)
        else:
            raise AssertionError("the settled list has no last page")
    assert checked > len(members) * 4
    # Every status appears in some group or the settled list of some member.
    statuses = set()
    for member in members:
        found = _member_bill_groups_in_sql(GroupsAsked(member, GROUPS, SETTLED, 50, None, 200, None, 50, today))
        statuses |= {b.status for _, listed in found.groups.values() for b in listed}
        statuses |= {b.status for b in found.settled}
    assert statuses == set(BillStatus.values)


def test_the_groups_hold_the_bills_the_api_lists_with_their_statuses() -> None:
    estate, _, members = _estate_with_ties()
    for member in members[:4]:
        access = access_cluster(member.user, estate.cluster.pk)
        listing = member_bill_list(access=access)
        listed = {b.pk: (b.status, b.can_pay) for b in listing.page(list(listing.rows))}
        found = member_bill_groups(
            access=access, groups=GROUPS, settled=SETTLED, shown=100, max_owing=200, settled_size=100
        )
        grouped = [b for _, bills in found.groups.values() for b in bills] + found.settled
        assert {b.pk: (b.status, b.can_pay) for b in grouped} == listed
        assert found.owing == sum(total for total, _ in found.groups.values())
        assert all(b.cluster == estate.cluster for b in grouped)


def test_a_member_no_longer_billed_has_no_bills() -> None:
    _, _, members = _estate_with_ties()
    gone = members[1]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    gone.refresh_from_db()
    for way in (_member_bill_groups_in_sql, _member_bill_groups_in_python):
        found = way(GroupsAsked(gone, GROUPS, SETTLED, 5, None, 200, None, 10, estate_today()))
        assert found.owing == 0 and found.settled == [] and all(not b for _, b in found.groups.values())


def test_at_least_one_bill_of_each_group_is_drawn() -> None:
    estate, _, members = _estate_with_ties()
    access = access_cluster(members[0].user, estate.cluster.pk)
    with pytest.raises(ValueError, match="shown"):
        member_bill_groups(access=access, groups=GROUPS, settled=SETTLED, shown=0, max_owing=200, settled_size=10)
