"""The base layout, where each person lands, the error pages, the formats and the
security headers of the pages."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from levy.estates.permissions import Role
from levy.web import format
from tests.conftest import Estate, make_estate
from tests.factories import MembershipFactory, UserFactory
from tests.web.conftest import Browser, browser_as, estate_url

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_sign_in(estate: Estate) -> None:
    assert Browser().get("/")["Location"] == "/sign-in/?next=/"
    assert Browser().get(estate_url(estate, "dashboard/"))["Location"] == (
        f"/sign-in/?next=/estates/{estate.cluster.pk}/dashboard/"
    )


@pytest.mark.parametrize("role", [Role.ADMIN, Role.TREASURER, Role.AUDITOR])
def test_staff_land_on_the_dashboard(estate: Estate, role: str) -> None:
    member = {Role.ADMIN: estate.admin, Role.TREASURER: estate.treasurer, Role.AUDITOR: estate.auditor}[role]
    browser = browser_as(member)
    assert browser.get("/")["Location"] == estate_url(estate)
    assert browser.get(estate_url(estate))["Location"] == estate_url(estate, "dashboard/")


def test_a_resident_lands_on_their_own_page_and_may_not_open_the_dashboard(estate: Estate) -> None:
    browser = browser_as(estate.residents[0])
    landing = browser.get(estate_url(estate))["Location"]
    assert landing in {estate_url(estate, "my-bills/"), "/notifications/"}
    refused = browser.get(estate_url(estate, "dashboard/"))
    assert refused.status_code == 403
    assert b"Your role can" in refused.content
    assert b'class="site-header"' in refused.content


def test_someone_in_several_estates_lands_on_the_last_one_they_used(estate: Estate, other_estate: Estate) -> None:
    MembershipFactory(cluster=other_estate.cluster, user=estate.admin.user, role=Role.TREASURER)
    browser = browser_as(estate.admin)
    first = browser.get("/")["Location"]
    assert first in {estate_url(estate), estate_url(other_estate)}
    other = other_estate if first == estate_url(estate) else estate
    page = browser.get(estate_url(other, "dashboard/"))
    assert page.status_code == 200
    assert browser.get("/")["Location"] == estate_url(other)
    # The switcher lists the other estate.
    assert f'href="/estates/{(estate if other is other_estate else other_estate).cluster.pk}/"'.encode() in page.content


def test_a_person_without_an_estate_is_told_what_to_do() -> None:
    user = UserFactory()
    response = browser_as(user).get("/")
    assert response.status_code == 200
    assert b"You are not in an estate yet" in response.content


def test_the_platform_operator_without_an_estate_goes_to_the_admin() -> None:
    operator = UserFactory(is_superuser=True, is_staff=True)
    assert browser_as(operator).get("/")["Location"] == "/admin/"


def _three_notifications_one_read(user: Any, estate: Estate) -> None:
    from levy.notifications.models import Notification

    for n in range(3):
        Notification.objects.create(
            recipient=user,
            cluster=estate.cluster,
            event="payment_due",
            event_key=f"k{n}",
            title="t",
            body="b",
            read_at=timezone.now() if n == 0 else None,
        )


def test_the_layout_shows_name_role_estate_and_unread_count(estate: Estate) -> None:
    user = estate.treasurer.user
    _three_notifications_one_read(user, estate)
    page = browser_as(estate.treasurer).get(estate_url(estate, "dashboard/")).content.decode()
    assert '<meta charset="utf-8">' in page
    assert 'href="#main"' in page and 'id="main"' in page
    assert user.name in page and ">Treasurer<" in page
    assert estate.cluster.name in page
    assert '<span class="count">2<span class="visually-hidden"> unread</span>' in page
    assert 'rel="icon"' in page
    assert "/static/vendor/htmx/htmx.min.js" in page


def test_another_estates_page_is_the_404_page_in_the_layout(estate: Estate, other_estate: Estate) -> None:
    response = browser_as(estate.admin).get(estate_url(other_estate, "dashboard/"))
    assert response.status_code == 404
    assert b"We can" in response.content and b'class="site-header"' in response.content
    malformed = browser_as(estate.admin).get("/estates/not-a-uuid/dashboard/")
    assert malformed.status_code == 404


def test_pages_carry_a_strict_content_security_policy(estate: Estate) -> None:
    response = browser_as(estate.admin).get(estate_url(estate, "dashboard/"))
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert b"<script>" not in response.content and b" style=" not in response.content


def test_htmx_is_served_by_the_app_itself(estate: Estate) -> None:
    from django.contrib.staticfiles import finders

    path = finders.find("vendor/htmx/htmx.min.js")
    assert path, "node_modules/htmx.org is missing: run npm ci (scripts/_env.sh does)"
    with open(path, encoding="utf-8") as f:
        assert 'version:"2.' in f.read().replace(" ", "")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("15000"), "NGN", "₦15,000.00"),
        (Decimal("1234567.5"), "NGN", "₦1,234,567.50"),
        (Decimal("-500"), "NGN", "-₦500.00"),
        (Decimal("0.005"), "USD", "$0.01"),
        ("99.9", "GHS", "GH₵99.90"),
        (Decimal("10"), "XYZ", "XYZ 10.00"),
        ("not money", "NGN", ""),
    ],
)
def test_money(amount: object, currency: str, expected: str) -> None:
    assert format.money(amount, currency) == expected


def test_dates_are_on_the_estate_calendar_and_relative() -> None:
    today = datetime.date(2026, 12, 5)
    assert format.due_relative(today, today) == "due today"
    assert format.due_relative(today + datetime.timedelta(days=1), today) == "due tomorrow"
    assert format.due_relative(today + datetime.timedelta(days=3), today) == "due in 3 days"
    assert format.due_relative(today - datetime.timedelta(days=1), today) == "overdue by 1 day"
    assert format.due_relative(today - datetime.timedelta(days=12), today) == "overdue by 12 days"
    # 23:30 UTC on the 5th is already the 6th in Lagos (UTC+1).
    late = datetime.datetime(2026, 12, 5, 23, 30, tzinfo=datetime.UTC)
    assert format.estate_date(late) == "6 Dec 2026"
    assert format.estate_datetime(late) == "6 Dec 2026, 00:30"
    now = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)
    assert format.ago(now - datetime.timedelta(seconds=30), now) == "just now"
    assert format.ago(now - datetime.timedelta(minutes=5), now) == "5 minutes ago"
    assert format.ago(now - datetime.timedelta(hours=1), now) == "1 hour ago"
    assert format.ago(now - datetime.timedelta(days=2), now) == "2 days ago"
    assert format.ago(now - datetime.timedelta(days=30), now) == "5 Nov 2026"


def test_status_badges_say_the_status_in_words() -> None:
    assert format.status_badge("overdue") == '<span class="badge badge-overdue">Overdue</span>'
    assert format.status_badge("paid") == '<span class="badge badge-paid">Paid</span>'
    assert format.status_badge("<b>") == '<span class="badge badge-&lt;b&gt;">&lt;b&gt;</span>'


def test_the_header_statement_reads_what_the_two_reads_do(estate: Estate, other_estate: Estate) -> None:
    """``header_reads`` (one fixed statement on PostgreSQL) returns the person's active
    memberships with their estates, by estate name, and their unread count, exactly as
    ``person_estates`` and ``unread_count``: for someone in two estates with a left one,
    someone in one, and someone in none."""
    from django.db import connection

    from levy.web.selectors import header_reads, person_estates, unread_count

    assert connection.vendor == "postgresql"
    several = estate.admin.user
    MembershipFactory(cluster=other_estate.cluster, user=several, role=Role.TREASURER)
    left = MembershipFactory(cluster=make_estate(residents=0).cluster, user=several)
    left.active, left.deactivated_at = False, timezone.now()
    left.save()
    _three_notifications_one_read(several, estate)
    for user in (several, estate.residents[0].user, UserFactory()):
        memberships, unread = header_reads(user)
        reference = person_estates(user)
        assert [(m.pk, m.role, m.cluster.pk, m.cluster.name) for m in memberships] == [
            (m.pk, m.role, m.cluster.pk, m.cluster.name) for m in reference
        ]
        assert unread == unread_count(user)
    assert len(header_reads(several)[0]) == 2 and header_reads(several)[1] == 2
    assert header_reads(UserFactory()) == ([], 0)
