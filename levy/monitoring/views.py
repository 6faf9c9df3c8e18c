"""``/metrics``: Prometheus text format, optionally behind a bearer token."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from levy.monitoring.metrics import record_resident_memory


class _ProcessRegistry:
    """This process's own metrics (single-process mode: tests, runserver, the demo)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_web_metrics(live: Iterable[Collector] = ()) -> bytes:
    """Every web process's counters (one directory of files under gunicorn, this
    process alone otherwise), then the gauges read at scrape time (``live``: the
    notification backlog and the queues, which ``config/urls.py`` passes in)."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ProcessRegistry())
    for collector in live:
        registry.register(collector)
    return generate_latest(registry)


def token_accepted(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>`` matches ``token`` (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "details": {}}}, status=status)


def unauthorised() -> JsonResponse:
    response = error_response(401, "not_authenticated", "Send the metrics token as 'Authorization: Bearer <token>'.")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@csrf_exempt  # a scraper's endpoint: other methods get a 405, not a CSRF page
def metrics(request: HttpRequest, live: Iterable[Collector] = ()) -> HttpResponse:
    if request.method not in {"GET", "HEAD"}:
        response = error_response(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
        response["Allow"] = "GET, HEAD"
        return response
    token = settings.LEVY_METRICS_TOKEN
    if token and not token_accepted(request.headers.get("Authorization"), token):
        return unauthorised()
    record_resident_memory("web")
    return HttpResponse(render_web_metrics(live), content_type=CONTENT_TYPE_LATEST)
