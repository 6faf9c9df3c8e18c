"""Log records that carry the request id (and, in a worker, the task), as text or JSON.

``LOG_FORMAT=json`` (the production default) writes one JSON object per line; ``text``
writes one readable line. Both carry the id of the request that caused the line —
in the web process and, through the task message, in the Celery worker that runs
the task the request queued — so one grep follows a request across processes.
"""

from __future__ import annotations

import datetime
import json
import logging
from contextvars import ContextVar
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("levy_request_id", default=None)
# (task name, task id) of the Celery task running in this context, if any.
_task: ContextVar[tuple[str, str] | None] = ContextVar("levy_task", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "task_name",
    "task_id",
}


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(request_id: str | None) -> Any:
    """Make ``request_id`` the current one; returns a token for ``reset_request_id``."""
    return _request_id.set(request_id)


def reset_request_id(token: Any) -> None:
    _request_id.reset(token)


def current_task() -> tuple[str, str] | None:
    return _task.get()


def set_task(name: str, task_id: str) -> Any:
    return _task.set((name, task_id))


def reset_task(token: Any) -> None:
    _task.reset(token)


def set_task_none() -> None:
    _task.set(None)


class ClientErrorTracebackFilter(logging.Filter):
    """Django logs a refused Host header, an oversized body or too many form fields
    (its SuspiciousOperation errors, logger ``django.security.<error>``) with a
    traceback. They are the caller's mistakes, answered with a 4xx: one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
        return True


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request or task), ``task_name`` and
    ``task_id`` (None outside a task) to every record. Attach it to handlers, so
    records propagated from any logger get it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        task = _task.get()
        if not hasattr(record, "task_name"):
            record.task_name = task[0] if task else None
        if not hasattr(record, "task_id"):
            record.task_id = task[1] if task else None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, request_id,
    pid, task_name and task_id in a worker, fields passed with ``extra=``, and the
    traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": record.process,
        }
        task_id = getattr(record, "task_id", None)
        if task_id:
            payload["task_name"] = getattr(record, "task_name", None)
            payload["task_id"] = task_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> [rid=<request id>] <message>``; in a worker the
    bracket also names the task: ``[rid=… task=<name>[<id>]]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        context = f"rid={getattr(record, 'request_id', None) or '-'}"
        task_id = getattr(record, "task_id", None)
        if task_id:
            context += f" task={getattr(record, 'task_name', None)}[{task_id}]"
        return f"{record.asctime} {record.levelname} {record.name} [{context}] {record.message}"


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter()
