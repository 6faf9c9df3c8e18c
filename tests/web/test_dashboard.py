"""The dashboard page: its figures, its chart, and a constant number of queries."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.services import bill_acknowledge
from levy.wallets.models import Transaction, TransactionType
from levy.web.selectors import _week_key, collections_by_week
from tests.conftest import Estate, access, committed, make_estate, new_key
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db


def _pay(estate: Estate, bill: object, member: object) -> None:
    estate.fund(member, "20000.00")  # type: ignore[arg-type]
    bill_acknowledge(access=access(member), bill=bill)  # type: ignore[arg-type]
    bill_pay(access=access(member), bill=bill, idempotency_key=new_key("pay"))  # type: ignore[arg-type]


def test_the_dashboard_shows_the_estates_figures(estate: Estate) -> None:
    bill = estate.wide_bill(title="Service charge December", amount=Decimal("15000.00"))
    _pay(estate, bill, estate.residents[0])
    page = browser_as(estate.auditor).get(estate_url(estate, "dashboard/"))
    assert page.status_code == 200
    html = page.content.decode()
    # 3 residents owe 15,000 each; one paid.
    assert "<dt>Billed</dt><dd>₦45,000.00</dd>" in html
    assert "<dt>Collected</dt><dd>₦15,000.00</dd>" in html
    assert "<dt>Outstanding</dt><dd>₦30,000.00</dd>" in html
    assert "<dt>Overdue</dt><dd>₦0.00</dd>" in html
    assert "<dt>Collection rate</dt><dd>33.3%</dd>" in html
    assert "<dt>Open disputes</dt><dd>0</dd>" in html
    assert "Service charge December" in html and "due in 14 days" in html and "2 still to pay" in html
    assert estate.residents[0].user.name in html
    assert "<svg" in html and 'role="img"' in html
    assert html.count('class="bar"><title>Week of') == 12


def test_a_refunded_payment_is_marked_refunded_and_is_not_collected(estate: Estate) -> None:
    bill = estate.wide_bill(title="Service charge December", amount=Decimal("15000.00"))
    kept, refunded = estate.residents[0], estate.residents[1]
    _pay(estate, bill, kept)
    _pay(estate, bill, refunded)
    payment = Transaction.objects.get(payer_id=refunded.user_id, type=TransactionType.BILL_PAYMENT)
    with committed():
        bill_payment_refund(
            access=access(estate.treasurer), payment=payment, idempotency_key=new_key("refund"), note="Paid twice"
        )
    html = browser_as(estate.auditor).get(estate_url(estate, "dashboard/")).content.decode()
    rows = html.split('id="payments-heading"')[1].split("</section>")[0].split("<li>")[1:]
    assert len(rows) == 2  # the payment stays listed, for the trail
    marked = [row for row in rows if 'class="badge badge-refunded">Refunded</span>' in row]
    assert len(marked) == 1
    assert refunded.user.name in marked[0] and kept.user.name not in marked[0]
    # Not money collected: the totals and the week's collections leave it out.
    assert "<dt>Collected</dt><dd>₦15,000.00</dd>" in html
    assert "<dt>Outstanding</dt><dd>₦30,000.00</dd>" in html
    assert collections_by_week(access(estate.admin), weeks=1)[0].amount == Decimal("15000.00")


def test_collections_by_week_are_the_weeks_payments(estate: Estate) -> None:
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    _pay(estate, bill, estate.residents[0])
    _pay(estate, bill, estate.residents[1])
    weeks = collections_by_week(access(estate.admin), weeks=4)
    assert len(weeks) == 4
    assert [w.amount for w in weeks] == [Decimal("0.00")] * 3 + [Decimal("30000.00")]
    assert weeks[-1].start.weekday() == 0
    assert weeks[-1].start <= datetime.date.today() + datetime.timedelta(days=1)


def test_past_weeks_come_from_the_cache_and_only_the_open_week_is_read(estate: Estate) -> None:
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    _pay(estate, bill, estate.residents[0])
    first = collections_by_week(access(estate.admin), weeks=4)
    # The three past weeks are final and kept; a kept figure is what the chart shows.
    tz = timezone.get_current_timezone()
    past = first[1].start
    assert cache.get(_week_key(estate.cluster.pk, tz, past)) == "0.00"
    cache.set(_week_key(estate.cluster.pk, tz, past), "123.45")
    with CaptureQueriesContext(connection) as queries:
        again = collections_by_week(access(estate.admin), weeks=4)
    assert [w.amount for w in again] == [Decimal("0.00"), Decimal("123.45"), Decimal("0.00"), Decimal("15000.00")]
    (chart_sql,) = [q["sql"] for q in queries.captured_queries if "wallets_transaction" in q["sql"]]
    this_monday = timezone.make_aware(datetime.datetime.combine(first[-1].start, datetime.time.min), tz)
    assert f">= '{this_monday.isoformat(sep=' ')}'" in chart_sql  # reads from this week on


def test_the_chart_without_a_reachable_cache_reads_every_week(estate: Estate) -> None:
    bill = estate.wide_bill(amount=Decimal("15000.00"))
    _pay(estate, bill, estate.residents[0])
    unreachable = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    with override_settings(CACHES=unreachable):
        weeks = collections_by_week(access(estate.admin), weeks=3)
    assert [w.amount for w in weeks] == [Decimal("0.00"), Decimal("0.00"), Decimal("15000.00")]


def _dashboard_queries(estate: Estate) -> int:
    browser = browser_as(estate.admin)
    browser.get(estate_url(estate, "dashboard/"))  # session and cookies settle
    n, response = count_queries(lambda: browser.client.get(estate_url(estate, "dashboard/")))
    assert response.status_code == 200
    return n


EXPECTED_DASHBOARD_QUERIES = 11


def test_the_dashboard_costs_the_same_queries_with_1_or_50_rows() -> None:
    small = make_estate(residents=1)
    bill = small.wide_bill()
    _pay(small, bill, small.residents[0])
    one = _dashboard_queries(small)

    large = make_estate(residents=12)
    for n in range(12):
        bill = large.wide_bill(title=f"Bill {n}")
        _pay(large, bill, large.residents[n])
    many = _dashboard_queries(large)
    assert one == many == EXPECTED_DASHBOARD_QUERIES
