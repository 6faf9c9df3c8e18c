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
    values = cursor_values(request, listing.rows.model, listing.ordering, param=param)
    if values is not None:
        rows = rows.filter(_after(listing.ordering, values))
    found = list(rows[: size + 1])
    listing.page(found[:size])
    return page_of(found, size=size, ordering=listing.ordering, is_first=values is None)


def cursor_values(
    request: HttpRequest, model: type[Model], ordering: Sequence[str], *, param: str = "after"
) -> list[Any] | None:
    """The values of ``ordering``'s fields that the request's cursor holds (the last row
    of the page before), or None: no cursor, or one that does not parse."""
    cursor = request.GET.get(param)
    return _decode_for(cursor, model, ordering) if cursor else None


def page_of(found: Sequence[Any], *, size: int, ordering: Sequence[str], is_first: bool) -> WebPage:
    """A page of rows already read in ``ordering`` after the cursor: ``size`` of them,
    and one more when there is a next page (whose cursor this makes)."""
    page = list(found[:size])
    next_cursor = None
    if len(found) > size:
        next_cursor = _encode([getattr(page[-1], name.lstrip("-")) for name in ordering])
    return WebPage(rows=page, next_cursor=next_cursor, is_first=is_first)
