"""OpenAPI helpers: the list envelope, the page parameters and the error body, declared
once so that every endpoint's schema says what it really answers."""

from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from levy.api.serializers import ErrorSerializer

PAGE_PARAMETERS = [
    OpenApiParameter("cursor", str, OpenApiParameter.QUERY, description="From a `next` or `previous` link."),
    OpenApiParameter("page_size", int, OpenApiParameter.QUERY, description="Rows per page: default 50, at most 100."),
]


@cache
def page_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The ``{"results": [...], "next": url|null, "previous": url|null}`` envelope."""
    name = item.__name__.removesuffix("Serializer")
    return type(
        f"Paginated{name}ListSerializer",
        (serializers.Serializer,),
        {
            "results": item(many=True),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
        },
    )


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


def errors(**by_status: str) -> dict[int, Any]:
    """The error responses every endpoint can give, plus ``by_status`` (e.g. ``_409="…"``)."""
    responses: dict[int, Any] = {
        400: error("validation_error"),
        401: error("not_authenticated"),
        404: error("not_found"),
        415: error("unsupported_media_type"),
        429: error("rate_limited (see the Retry-After header)"),
    }
    for key, description in by_status.items():
        responses[int(key.lstrip("_"))] = error(description)
    return responses


class LevyJWTScheme(SimpleJWTScheme):
    """The bearer-token scheme of simplejwt's own extension, for Levy's subclass."""

    target_class = "levy.api.authentication.LevyJWTAuthentication"
