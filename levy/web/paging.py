"""Pages of a list selector's ``Listing`` for the web pages: keyset ("after this row")
paging in the listing's own order, so a page deep into a 50,000-row list costs what the
first one does. The cursor travels in the URL (``?after=…``) beside the filters, so a
filtered page can be bookmarked and shared."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.http import HttpRequest

from levy.common.listing import Listing

PAGE_SIZE = 25


@dataclass(frozen=True)
class WebPage:
    rows: Sequence[Any]
    next_cursor: str | None
    is_first: bool

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def _encode(values: list[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime.date | datetime.datetime) else str(v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, listing: Listing[Any]) -> list[Any] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        values = json.loads(raw)
        model = listing.rows.model
        fields = [model._meta.get_field(name.lstrip("-")) for name in listing.ordering]
        if not isinstance(values, list) or len(values) != len(fields):
            return None
        return [field.to_python(value) for field, value in zip(fields, values, strict=True)]
    except Exception:  # any cursor that does not parse (edited by hand, or stale): the first page
        return None


def _after(ordering: tuple[str, str], values: list[Any]) -> Q:
    (first, second), (v1, v2) = ordering, values
    op1 = "lt" if first.startswith("-") else "gt"
    op2 = "lt" if second.startswith("-") else "gt"
    f1, f2 = first.lstrip("-"), second.lstrip("-")
    return Q(**{f"{f1}__{op1}": v1}) | Q(**{f1: v1, f"{f2}__{op2}": v2})


def web_page(listing: Listing[Any], request: HttpRequest, *, size: int = PAGE_SIZE, param: str = "after") -> WebPage:
    """The page of ``listing`` after the request's ``?after=`` cursor (the first page
    without one, or with one that does not parse), decorated by the listing. A second
    list on the same page pages by its own parameter (``param="bills_after"``)."""
    rows = listing.rows.order_by(*listing.ordering)
    cursor = request.GET.get(param)
    values = _decode(cursor, listing) if cursor else None
    if values is not None:
        rows = rows.filter(_after(listing.ordering, values))
    found = list(rows[: size + 1])
    page = found[:size]
    listing.page(page)
    next_cursor = None
    if len(found) > size:
        last = page[-1]
        next_cursor = _encode([getattr(last, name.lstrip("-")) for name in listing.ordering])
    return WebPage(rows=page, next_cursor=next_cursor, is_first=values is None)
