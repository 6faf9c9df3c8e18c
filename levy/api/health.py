"""``/healthz`` (the process is up) and ``/readyz`` (it can serve requests): plain
Django views, outside the API's authentication and rate limits, for load balancers
and orchestrators."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Whether this process can serve requests: 503 only when the database does not
    answer. The cache (Redis) is reported but not required: without it rate limits are
    not enforced and notifications wait for the sweep, but every request is still
    served — a load balancer must not take every web process out during a Redis outage."""
    from django.core.cache import cache

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: this is the health check
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("levy:readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("levy:readyz") == "1" else "error: no value"
    except Exception as exc:
        checks["cache"] = f"error: {type(exc).__name__}"
    if checks["database"] != "ok":
        return JsonResponse({"status": "unavailable", "checks": checks}, status=503)
    status = "ok" if checks["cache"] == "ok" else "degraded"
    return JsonResponse({"status": status, "checks": checks}, status=200)
