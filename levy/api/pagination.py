from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from levy.common.listing import Listing

INVALID_CURSOR = {"cursor": ["Invalid cursor: use the next and previous links as they are."]}


class LevyCursorPagination(CursorPagination):
    """Cursor pagination: stable under inserts, no COUNT(*), O(page) at any depth.

    ``?page_size=`` defaults to 50 and is capped at 100. Ordering is newest first with
    the primary key as a tie-breaker inside the cursor's offset.
    """

    page_size = 50
    max_page_size = 100
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")

    def __init__(self, ordering: tuple[str, str] | None = None) -> None:
        if ordering is not None:
            self.ordering = ordering

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise DrfValidationError(INVALID_CURSOR) from None

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        """A cursor whose position does not fit the ordering is bad input (400)."""
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise DrfValidationError(INVALID_CURSOR) from None

    def get_page_size(self, request):  # type: ignore[no-untyped-def]
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except (TypeError, ValueError):
            return self.page_size
        return max(1, min(size, self.max_page_size))


def listing_response(view: APIView, listing: Listing[Any], serializer: Any, **context: Any) -> Response:
    """One page of a list selector's rows in its ordering, decorated, serialized."""
    paginator = LevyCursorPagination(ordering=listing.ordering)
    page = paginator.paginate_queryset(listing.rows, view.request, view=view)
    listing.page(page)
    return paginator.get_paginated_response(serializer(page, many=True, context=context).data)
