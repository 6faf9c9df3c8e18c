"""``Server-Timing`` on every response: SQL queries, their time, and the request's time.

Enabled by the setting ``LEVY_SERVER_TIMING`` (env ``LEVY_SERVER_TIMING``, off by
default); when off, Django drops the middleware at start-up and it costs nothing. When
on, each response carries::

    Server-Timing: db;dur=<ms>;desc="<n> queries", app;dur=<ms>

``db`` counts every statement sent through Django's database connections while the
request was handled (``connection.execute_wrapper``) and sums their time; ``app`` is
the time from this middleware receiving the request to the response leaving it. The
benchmark (``scripts/bench.py``) reads both: queries per request, and the share of a
request's time spent in SQL. Browsers show the header in their developer tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import connections
from django.http import HttpRequest, HttpResponseBase


class QueryTimer:
    """An ``execute_wrapper``: counts the statements and sums their time."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


def server_timing_header(*, queries: int, db_seconds: float, app_seconds: float) -> str:
    return f'db;dur={db_seconds * 1000:.2f};desc="{queries} queries", app;dur={app_seconds * 1000:.2f}'


class ServerTimingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        if not getattr(settings, "LEVY_SERVER_TIMING", False):
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        timer = QueryTimer()
        with ExitStack() as stack:
            for conn in connections.all():
                stack.enter_context(conn.execute_wrapper(timer))
            response = self.get_response(request)
        response["Server-Timing"] = server_timing_header(
            queries=timer.count, db_seconds=timer.seconds, app_seconds=time.perf_counter() - started
        )
        return response
