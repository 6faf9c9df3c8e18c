"""A page of rows read elsewhere after the request's cursor (``cursor_values``, then
``page_of``: what My bills does with the rows of its fixed statement) pages exactly as
``web_page`` (rows read a page at a time): the same rows on each page and the same
cursors, ties in the first field included."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory
from django.utils import timezone

from levy.billing.models import Bill
from levy.common.listing import Listing
from levy.web.paging import cursor_values, page_of, web_page
from tests.conftest import make_estate

pytestmark = pytest.mark.django_db
ORDERING = ("-created_at", "-id")


def _read_after(ordered: list[Bill], request: Any, size: int) -> Any:
    """Rows already in ``ORDERING`` (newest first), the ones after the cursor."""
    values = cursor_values(request, Bill, ORDERING)
    rest = ordered if values is None else [b for b in ordered if (b.created_at, b.pk) < (values[0], values[1])]
    return page_of(rest[: size + 1], size=size, ordering=ORDERING, is_first=values is None)


def _walk(page_of: Any) -> list[tuple[list[Any], str | None]]:
    pages, cursor = [], None
    for _ in range(20):
        request = RequestFactory().get("/", {"after": cursor} if cursor else {})
        page = page_of(request)
        pages.append(([row.pk for row in page.rows], page.next_cursor))
        assert page.is_first is (cursor is None)
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("no last page")


def test_a_sorted_sequence_pages_as_the_listing_does() -> None:
    estate = make_estate(residents=0)
    for n in range(11):
        estate.wide_bill(title=f"Bill {n}")
    # Four bills share one instant: the cursor must break the tie by id, both ways.
    same = timezone.now()
    Bill.objects.filter(pk__in=list(Bill.objects.order_by("created_at").values_list("pk", flat=True)[3:7])).update(
        created_at=same
    )
    rows = Bill.objects.filter(cluster=estate.cluster)
    listing = Listing(rows, ORDERING)
    ordered = list(rows.order_by(*ORDERING))
    for size in (1, 3, 4, 11, 12):
        by_listing = _walk(lambda request, size=size: web_page(listing, request, size=size))
        by_sequence = _walk(lambda request, size=size: _read_after(ordered, request, size))
        assert by_sequence == by_listing, size
        assert [pk for page, _ in by_sequence for pk in page] == [b.pk for b in ordered]


def test_a_cursor_that_does_not_parse_gives_the_first_page() -> None:
    estate = make_estate(residents=0)
    bills = [estate.wide_bill(title=f"Bill {n}") for n in range(3)]
    ordered = sorted(bills, key=lambda b: (b.created_at, b.pk), reverse=True)
    request = RequestFactory().get("/", {"after": "not-a-cursor"})
    page = _read_after(ordered, request, 2)
    assert page.is_first and [b.pk for b in page.rows] == [b.pk for b in ordered[:2]] and page.has_next
