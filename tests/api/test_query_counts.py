"""Queries per request are a constant: independent of the page size and of the data
(targets.md, "Queries per request").

For each endpoint the data is built with one row and the request is measured; rows are
added until the page (or, for a detail endpoint, what it aggregates) has 50, and it is
measured again. The two counts must be equal, and equal to the number in ``EXPECTED``,
so that a regression (a new query, or an N+1) shows as a failing number. Lists are also
measured with ``?page_size=10`` and on their next page. Only SQL is counted: the rate
limiter talks to the cache.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from levy.billing.counters import recount
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.schedules import schedule_create
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.payments.accounts import provider_account_save
from levy.payments.models import PaymentAnomaly, ProviderAccount, TopUp
from tests.api.conftest import api_as
from tests.conftest import Estate, access, new_key, schedule_input
from tests.factories import ClusterFactory, MembershipFactory

pytestmark = pytest.mark.django_db

PAGE = 50


def _page_rows(body: dict[str, Any]) -> int:
    return len(body["results"])


@dataclass
class Scenario:
    """One endpoint, with its data built with at most one row: ``grow(n)`` adds ``n``
    rows, ``rows`` reads the row count off a response (the page's length for lists)."""

    estate: Estate
    caller: Membership | Any
    path: str
    grow: Callable[[int], None]
    rows: Callable[[dict[str, Any]], int] = _page_rows

    @property
    def paginated(self) -> bool:
        return self.rows is _page_rows


def _base(e: Estate) -> str:
    return f"/api/v1/clusters/{e.cluster.pk}"


def _lean_estate(residents: int = 1) -> Estate:
    """An estate whose only staff is its admin (so a member list starts at one row)."""
    cluster = ClusterFactory()
    admin = MembershipFactory(cluster=cluster, role=Role.ADMIN)
    return Estate(
        cluster=cluster,
        admin=admin,
        treasurer=admin,
        auditor=admin,
        residents=[MembershipFactory(cluster=cluster) for _ in range(residents)],
    )


def _paid_bill(e: Estate, member: Membership, **overrides: Any) -> Bill:
    """An estate-wide bill, acknowledged, disputed by no one and paid by ``member``."""
    bill = e.wide_bill(**overrides)
    bill_acknowledge(access=access(member), bill=bill)
    e.fund(member, bill.amount)
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))
    return bill


# --- management ----------------------------------------------------------------------------


def management_members() -> Scenario:
    e = _lean_estate(residents=0)
    # Bills for the summaries to count: one estate-wide now, and one of their own for each member added.
    e.wide_bill()

    def grow(n: int) -> None:
        for _ in range(n):
            member = e.add()
            e.user_bill(member, amount=Decimal("100.00"))

    return Scenario(e, e.admin, f"{_base(e)}/management/members/", grow)


def management_bills() -> Scenario:
    e = _lean_estate(residents=2)
    e.fund(e.residents[0], "1000000.00")

    def grow(n: int) -> None:
        for i in range(n):
            bill = e.wide_bill(title=f"Bill {i}", amount=Decimal("100.00"))
            bill_acknowledge(access=access(e.residents[0]), bill=bill)
            bill_pay(access=access(e.residents[0]), bill=bill, idempotency_key=new_key())
            bill_dispute(access=access(e.residents[1]), bill=bill, reason="no")

    return Scenario(e, e.admin, f"{_base(e)}/management/bills/", grow)


def _bill_with_growing_audience(suffix: str, rows: Callable[[dict[str, Any]], int]) -> Scenario:
    e = _lean_estate(residents=0)
    bill = e.wide_bill()

    def grow(n: int) -> None:
        for i in range(n):
            member = e.add()
            if i % 2:
                bill_acknowledge(access=access(member), bill=bill)
            if i % 3 == 0:
                bill_dispute(access=access(member), bill=bill, reason="no")
        # The members were inserted directly (as the data generator does), not through
        # the services that keep the bill's counters: recount it from the facts.
        recount(Bill.objects.filter(pk=bill.pk))

    return Scenario(e, e.admin, f"{_base(e)}/management/bills/{bill.pk}/{suffix}", grow, rows)


def management_bill() -> Scenario:
    return _bill_with_growing_audience("", lambda body: body["stats"]["eligible"])


def management_bill_members() -> Scenario:
    return _bill_with_growing_audience("members/", _page_rows)


def management_dashboard() -> Scenario:
    e = _lean_estate(residents=1)
    e.add(role=Role.TREASURER)

    def grow(n: int) -> None:
        for i in range(n):
            _paid_bill(e, e.residents[0], title=f"Bill {i}", amount=Decimal("100.00"))
            e.wide_bill(title=f"Unpaid {i}", due_date=estate_today() + datetime.timedelta(days=1 + i))

    return Scenario(e, e.admin, f"{_base(e)}/management/dashboard/", grow, lambda body: body["bills_count"] // 2)


def management_disputes() -> Scenario:
    e = _lean_estate(residents=1)

    def grow(n: int) -> None:
        for _ in range(n):
            bill_dispute(access=access(e.residents[0]), bill=e.wide_bill(), reason="no")

    return Scenario(e, e.admin, f"{_base(e)}/management/disputes/", grow)


def management_transactions() -> Scenario:
    e = _lean_estate(residents=1)

    def grow(n: int) -> None:
        for _ in range(n):
            e.fund(e.residents[0], "10.00")

    return Scenario(e, e.admin, f"{_base(e)}/management/transactions/", grow)


def management_schedules() -> Scenario:
    e = _lean_estate(residents=1)

    def add(i: int) -> None:
        schedule_create(
            access=access(e.admin),
            data=schedule_input(
                title=f"Levy {i}",
                frequency=["monthly", "quarterly", "yearly"][i % 3],
                first_due_date=estate_today() + datetime.timedelta(days=10 + i),
            ),
            user_id=e.residents[0].user_id if i % 2 else None,
        )

    add(0)

    def grow(n: int) -> None:
        for i in range(1, n + 1):
            add(i)

    return Scenario(e, e.admin, f"{_base(e)}/management/schedules/", grow)


# --- members --------------------------------------------------------------------------------


def member_bills() -> Scenario:
    e = _lean_estate(residents=1)
    me = e.residents[0]
    e.fund(me, "1000000.00")

    def grow(n: int) -> None:
        for i in range(n):
            bill = e.wide_bill(title=f"Bill {i}", amount=Decimal("100.00")) if i % 2 else e.user_bill(me)
            if i % 3 == 0:
                bill_acknowledge(access=access(me), bill=bill)
            if i % 6 == 0:
                bill_pay(access=access(me), bill=bill, idempotency_key=new_key())

    return Scenario(e, me, f"{_base(e)}/bills/", grow)


def member_bill() -> Scenario:
    e = _lean_estate(residents=1)
    me = e.residents[0]
    bill = e.wide_bill()
    bill_acknowledge(access=access(me), bill=bill)
    audience = [me]

    def grow(n: int) -> None:
        # More members acknowledge and dispute the same bill, and the caller gains bills.
        for i in range(n):
            other = e.add()
            audience.append(other)
            if i % 2:
                bill_acknowledge(access=access(other), bill=bill)
            else:
                bill_dispute(access=access(other), bill=bill, reason="no")
            e.wide_bill()

    return Scenario(e, me, f"{_base(e)}/bills/{bill.pk}/", grow, lambda body: len(audience))


def member_wallet() -> Scenario:
    e = _lean_estate(residents=1)
    me = e.residents[0]

    def grow(n: int) -> None:
        for _ in range(n):
            e.fund(me, "10.00")

    return Scenario(e, me, f"{_base(e)}/wallet/", grow, lambda body: int(Decimal(body["balance"]) / 10))


def member_wallet_transactions() -> Scenario:
    e = _lean_estate(residents=1)
    me = e.residents[0]

    def grow(n: int) -> None:
        for _ in range(n):
            e.fund(me, "10.00")

    return Scenario(e, me, f"{_base(e)}/wallet/transactions/", grow)


# --- payments -------------------------------------------------------------------------------


def _top_ups(e: Estate, member: Membership, n: int, **fields: Any) -> None:
    """``n`` top-ups of ``member``, written directly (no provider call is measured here)."""
    account = ProviderAccount.objects.filter(cluster=e.cluster).first() or provider_account_save(
        access=access(e.admin), provider="paystack", secret_key=new_key("sk"), active=True
    )
    now = timezone.now()
    TopUp.objects.bulk_create(
        TopUp(
            cluster=e.cluster,
            user=member.user,
            account=account,
            provider="paystack",
            reference=new_key("LVYQC"),
            amount=Decimal("100.00"),
            currency="NGN",
            idempotency_key=new_key(),
            created_at=now,
            expires_at=now + datetime.timedelta(hours=1),
            **fields,
        )
        for _ in range(n)
    )


def management_top_ups() -> Scenario:
    e = _lean_estate(residents=2)
    return Scenario(
        e,
        e.admin,
        f"{_base(e)}/management/top-ups/",
        lambda n: _top_ups(e, e.residents[n % 2], n),
    )


def management_payment_anomalies() -> Scenario:
    e = _lean_estate(residents=1)

    def grow(n: int) -> None:
        PaymentAnomaly.objects.bulk_create(
            PaymentAnomaly(cluster=e.cluster, kind="unknown_reference", source="webhook", reference=new_key("R"))
            for _ in range(n)
        )

    return Scenario(e, e.admin, f"{_base(e)}/management/payment-anomalies/", grow)


def member_top_ups() -> Scenario:
    e = _lean_estate(residents=1)
    me = e.residents[0]
    return Scenario(e, me, f"{_base(e)}/top-ups/", lambda n: _top_ups(e, me, n))


# --- the caller -----------------------------------------------------------------------------


def notifications() -> Scenario:
    e = _lean_estate(residents=1)

    def grow(n: int) -> None:
        for _ in range(n):
            e.wide_bill()

    return Scenario(e, e.residents[0], "/api/v1/notifications/", grow)


def _member_of_many(path: str, rows: Callable[[dict[str, Any]], int]) -> Scenario:
    e = _lean_estate(residents=0)
    me = e.admin

    def grow(n: int) -> None:
        for i in range(n):
            MembershipFactory(user=me.user, role=[Role.RESIDENT, Role.TREASURER, Role.ADMIN][i % 3])

    return Scenario(e, me, path, grow, rows)


def me() -> Scenario:
    return _member_of_many("/api/v1/me/", lambda body: len(body["memberships"]))


def clusters() -> Scenario:
    return _member_of_many("/api/v1/clusters/", _page_rows)


# Every request pays 1 query for the signed-in user (JWT); under /clusters/{id}/ the
# same statement reads the caller's membership with its estate (access_cluster).
AUTH, ESTATE = 1, 0
EXPECTED: dict[str, int] = {
    # the page of members, then the page's bill summaries in one grouped query
    "management-members": AUTH + ESTATE + 2,
    # the bills, annotated with their stats
    "management-bills": AUTH + ESTATE + 1,
    # the bill (access_bill_as_staff), then the same bill annotated with its stats
    "management-bill": AUTH + ESTATE + 2,
    # the bill, the page of its audience, then the page's facts for the bill
    "management-bill-members": AUTH + ESTATE + 3,
    # totals over the live bills' counters, bills due soon, open disputes (all, and those
    # on cancelled bills), members, recent payments
    "management-dashboard": AUTH + ESTATE + 6,
    "management-disputes": AUTH + ESTATE + 1,
    "management-transactions": AUTH + ESTATE + 1,
    # the page of schedules (their estate joined)
    "management-schedules": AUTH + ESTATE + 1,
    # the page of the caller's bills, then the caller's facts for the page
    "member-bills": AUTH + ESTATE + 2,
    # the bill (access_bill_as_member), then the caller's facts for it
    "member-bill": AUTH + ESTATE + 2,
    "member-wallet": AUTH + ESTATE + 1,
    "member-wallet-transactions": AUTH + ESTATE + 1,
    # the page of top-ups (with their members, for the management list)
    "management-top-ups": AUTH + ESTATE + 1,
    "management-payment-anomalies": AUTH + ESTATE + 1,
    "member-top-ups": AUTH + ESTATE + 1,
    "notifications": AUTH + 1,
    # the caller's active memberships with their estates
    "me": AUTH + 1,
    "clusters": AUTH + 1,
}

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "management-members": management_members,
    "management-bills": management_bills,
    "management-bill": management_bill,
    "management-bill-members": management_bill_members,
    "management-dashboard": management_dashboard,
    "management-disputes": management_disputes,
    "management-transactions": management_transactions,
    "management-schedules": management_schedules,
    "member-bills": member_bills,
    "member-bill": member_bill,
    "member-wallet": member_wallet,
    "member-wallet-transactions": member_wallet_transactions,
    "management-top-ups": management_top_ups,
    "management-payment-anomalies": management_payment_anomalies,
    "member-top-ups": member_top_ups,
    "notifications": notifications,
    "me": me,
    "clusters": clusters,
}


def measure(scenario: Scenario, path: str | None = None) -> tuple[int, dict[str, Any], list[str]]:
    api = api_as(scenario.caller)
    with CaptureQueriesContext(connection) as queries:
        response = api.client.get(path or scenario.path)
    assert response.status_code == 200, response.json()
    return len(queries.captured_queries), response.json(), [q["sql"] for q in queries.captured_queries]


def test_every_scenario_has_an_expected_count() -> None:
    assert set(SCENARIOS) == set(EXPECTED)


@pytest.mark.parametrize("name", SCENARIOS)
def test_queries_per_request_do_not_depend_on_rows(name: str) -> None:
    scenario = SCENARIOS[name]()
    _, body, _ = measure(scenario)  # also warms up anything done once per process
    have = scenario.rows(body)
    assert have <= 1, f"{name}: the scenario starts with {have} rows"
    scenario.grow(1 - have)
    one, body, sql_one = measure(scenario)
    assert scenario.rows(body) == 1, body
    scenario.grow(PAGE - 1)
    many, body, sql_many = measure(scenario)
    assert scenario.rows(body) == PAGE, body
    assert one == many, (f"{name}: {one} queries for 1 row, {many} for {PAGE}", sql_one, sql_many)
    assert many == EXPECTED[name], (f"{name}: {many} queries, expected {EXPECTED[name]}", sql_many)
    if scenario.paginated:
        small, body, sql_small = measure(scenario, f"{scenario.path}?page_size=10")
        assert len(body["results"]) == 10
        assert small == EXPECTED[name], (f"{name}: {small} queries with page_size=10", sql_small)
        following, body, sql_next = measure(scenario, body["next"])
        assert len(body["results"]) == 10
        assert following == EXPECTED[name], (f"{name}: {following} queries on the next page", sql_next)
