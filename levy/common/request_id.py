"""The request id: taken from ``X-Request-ID`` when it is sane, generated otherwise,
returned in the response, put on every log line of the request, and carried in the
message of every Celery task the request queues, so the worker's log lines for that
task carry it too."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from levy.common import logs

HEADER = "X-Request-ID"
# The Celery message header that carries the id from the publisher to the worker.
TASK_HEADER = "levy_request_id"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def sane_request_id(value: object) -> str | None:
    """``value`` if it is at most 64 characters of ``[A-Za-z0-9._-]``, else None."""
    if isinstance(value, str) and _SANE.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Put first in MIDDLEWARE, so every later log line of the request carries the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = sane_request_id(request.headers.get(HEADER)) or new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        # Not reset when the response is returned: Django logs 4xx/5xx answers after
        # the middleware has run. ``request_finished`` clears it.
        logs.set_request_id(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def clear_request_id(**kwargs: Any) -> None:
    """``request_finished`` receiver: the request is over; later lines of this thread
    belong to no request."""
    logs.set_request_id(None)


# --- Celery: publisher side and worker side --------------------------------------------------


def add_request_id_header(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """``before_task_publish`` receiver: copy the current request id into the task
    message's headers (the dict Celery is about to publish)."""
    request_id = logs.current_request_id()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _request_id_of(task: Any) -> str | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, TASK_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(TASK_HEADER) if isinstance(headers, dict) else None
    return sane_request_id(value)


# Tokens of the context set for each running task, by task id, so postrun restores
# exactly what prerun replaced (a task run in-process keeps its request's id after).
_task_tokens: dict[str, tuple[Any, Any]] = {}


def bind_task_context(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """``task_prerun`` receiver: the task's log lines carry the request id from its
    message (if any) and the task's name and id."""
    if task_id is None or task is None:
        return
    request_id = _request_id_of(task) or logs.current_request_id()
    _task_tokens[task_id] = (logs.set_request_id(request_id), logs.set_task(task.name, task_id))


def unbind_task_context(task_id: str | None = None, **kwargs: Any) -> None:
    """``task_postrun`` receiver: back to the context from before the task."""
    tokens = _task_tokens.pop(task_id, None) if task_id is not None else None
    if tokens is None:
        return
    request_token, task_token = tokens
    try:
        logs.reset_task(task_token)
        logs.reset_request_id(request_token)
    except ValueError:  # postrun in another context than prerun: just clear
        logs.set_task_none()
        logs.set_request_id(None)
