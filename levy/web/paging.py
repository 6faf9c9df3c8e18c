"""Pages of a list selector's ``Listing`` for the web pages: keyset ("after this row")
paging in the listing's own order, so a page deep into a 50,000-row list costs what the
first one does. The cursor travels in the URL (``?after=…``) beside the filters, so a
filtered page can be bookmarked and shared."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, Q
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
    return _decode_for(cursor, listing.rows.model, listing.ordering)


def _decode_for(cursor: str, model: Any, ordering: Sequence[str]) -> list[Any] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        values = json.loads(raw)
        fields = [model._meta.get_field(name.lstrip("-")) for name in ordering]
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


def sequence_page(
    items: Sequence[Any],
    request: HttpRequest,
    *,
    model: type[Model],
    ordering: tuple[str, str],
    key: Callable[[Any], tuple[Any, Any]],
    size: int = PAGE_SIZE,
    param: str = "after",
) -> WebPage:
    """:func:`web_page` over rows already read and sorted in ``ordering`` (two fields of
    ``model``; ``key`` gives a row's values of them): the same cursors, so a page's
    links read the same whichever way its rows were read."""
    cursor = request.GET.get(param)
    values = _decode_for(cursor, model, ordering) if cursor else None
    rest: Sequence[Any] = items
    if values is not None:
        (v1, v2), (d1, d2) = values, (ordering[0].startswith("-"), ordering[1].startswith("-"))

        def after(row: Any) -> bool:
            k1, k2 = key(row)
            return (k1 < v1 if d1 else k1 > v1) or (k1 == v1 and (k2 < v2 if d2 else k2 > v2))

        rest = [row for row in items if after(row)]
    page = list(rest[:size])
    next_cursor = _encode(list(key(page[-1]))) if len(rest) > size else None
    return WebPage(rows=page, next_cursor=next_cursor, is_first=values is None)
