"""What a list selector returns, so that every caller (API, pages, exports) pages it the
same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)

NEWEST_FIRST = ("-created_at", "-id")


@dataclass(frozen=True)
class Listing(Generic[M]):
    """A list read, before a page is chosen.

    ``rows`` is the scoped, filtered queryset; ``ordering`` the two fields a cursor
    pages by (the last one unique); ``decorate``, when set, reads what the rows show
    for the chosen page only — one statement per page, whatever the estate's size — and
    sets it on the page's objects. A caller pages ``rows`` in ``ordering``, then calls
    ``decorate(page)``.
    """

    rows: QuerySet[M, Any]
    ordering: tuple[str, str] = NEWEST_FIRST
    decorate: Callable[[Sequence[Any]], object] | None = None

    def page(self, page: Sequence[Any]) -> Sequence[Any]:
        """``page`` with what ``decorate`` reads set on it."""
        if self.decorate is not None:
            self.decorate(page)
        return page
