"""Request rate, latency and errors by route."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from levy.monitoring.metrics import API_ERRORS, HTTP_DURATION, HTTP_REQUESTS, record_resident_memory

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
STATIC = "static"
_CODE = re.compile(r"[a-z0-9_]{1,64}")
request_logger = logging.getLogger("levy.request")


def route_of(request: HttpRequest) -> str:
    """The route template of the URL pattern that answered (e.g.
    ``api/v1/clusters/<str:cluster_id>/bills/``), never the raw path: the number of
    label values stays that of the URL patterns."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return str(match.route)
    static_url = "/" + str(settings.STATIC_URL or "").lstrip("/")
    if static_url != "/" and request.path.startswith(static_url):
        return STATIC
    return UNMATCHED


def error_code_of(response: HttpResponse) -> str | None:
    """The ``code`` of an API error body (``{"error": {"code": …}}``), if any."""
    data: Any = getattr(response, "data", None)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            code = str(error["code"])
            return code if _CODE.fullmatch(code) else "other"
    return None


class RequestMetricsMiddleware:
    """Counts and times every request and, with LEVY_REQUEST_LOG, logs one line for it.
    Put near the top of MIDDLEWARE, so the time includes the other middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        route = route_of(request)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(method=method, route=route, status=str(response.status_code)).inc()
        HTTP_DURATION.labels(route=route).observe(elapsed)
        code = error_code_of(response)
        if code is not None:
            API_ERRORS.labels(route=route, code=code).inc()
        record_resident_memory("web")
        if settings.LEVY_REQUEST_LOG:
            milliseconds = round(elapsed * 1000, 1)
            request_logger.info(
                "%s %s %s %.1fms",
                request.method,
                request.path,
                response.status_code,
                milliseconds,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": milliseconds,
                },
            )
        return response
