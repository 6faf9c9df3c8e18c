"""One exception handler: every error leaves the API in the shape of api.md.

``{"error": {"code": "<snake_case>", "message": "<for people>", "details": {...}}}``
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from levy.common import errors as app

logger = logging.getLogger("levy.api")

STATUS_BY_ERROR: list[tuple[type[app.ApplicationError], int]] = [
    (app.ValidationError, 400),
    (app.NotAuthenticatedError, 401),
    (app.TooManyAttemptsError, 429),
    (app.InsufficientFundsError, 402),
    (app.PermissionDeniedError, 403),
    (app.NotFoundError, 404),
    (app.RuleViolation, 409),
    (app.IdempotencyKeyReusedError, 422),
    (app.UpstreamError, 503),
]


class ApiError(drf.APIException):
    """An error raised by the API layer itself with an explicit status and code."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        self.status_code = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(message, code)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def suspicious_error(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The status and body for one of Django's SuspiciousOperation errors: a body over
    the upload limit, too many form fields, a Host that is not ours."""
    from django.core.exceptions import DisallowedHost

    if isinstance(exc, RequestDataTooBig):
        return 413, error_body("request_too_large", "The request body is larger than this server accepts.")
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return 400, error_body("validation_error", "The form has more fields than this server accepts.", {"fields": {}})
    if isinstance(exc, DisallowedHost):
        return 400, error_body("invalid_host", "The Host header names a host this server does not serve.")
    return 400, error_body("bad_request", "The request could not be understood.")


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten(v) for v in detail]
    return str(detail)


def _authentication_message(detail: Any) -> str:
    """The token library refuses with a dict (detail, code, messages): one sentence,
    with the reason (e.g. "Token is expired") when it gives one."""
    if not isinstance(detail, dict):
        return str(detail)
    message = str(detail.get("detail", "")) or "Authentication failed."
    reasons = [str(m.get("message")) for m in detail.get("messages", []) if isinstance(m, dict) and m.get("message")]
    return f"{message}: {reasons[0]}." if reasons else message


def _field_errors(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        fields = {}
        for key, value in detail.items():
            name = "non_field_errors" if key == "non_field_errors" else str(key)
            flat = _flatten(value)
            fields[name] = flat if isinstance(flat, (list, dict)) else [flat]
        return fields
    return {"non_field_errors": _flatten(detail) if isinstance(detail, list) else [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, app.ApplicationError):
        status = next((code for cls, code in STATUS_BY_ERROR if isinstance(exc, cls)), 400)
        body = error_body(exc.code, exc.message, exc.details)
        if isinstance(exc, app.NotAuthenticatedError):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        if isinstance(exc, app.TooManyAttemptsError):
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, ApiError):
        status = exc.status_code
        body = error_body(exc.code, exc.message, exc.details)
    elif isinstance(exc, drf.ValidationError):
        status = 400
        body = error_body("validation_error", "Invalid input.", {"fields": _field_errors(exc.detail)})
    elif isinstance(exc, drf.ParseError):
        status = 400
        body = error_body("validation_error", str(exc.detail), {"fields": {}})
    elif isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        status = 401
        body = error_body("not_authenticated", _authentication_message(exc.detail))
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    elif isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        status = 403
        body = error_body("permission_denied", "You do not have permission to perform this action.")
    elif isinstance(exc, (drf.NotFound, Http404)):
        status = 404
        body = error_body("not_found", "Not found.")
    elif isinstance(exc, drf.Throttled):
        status = 429
        wait = max(1, math.ceil(getattr(exc, "wait", None) or 1))
        headers["Retry-After"] = str(wait)
        body = error_body("rate_limited", "Too many requests. Try again later.", {"retry_after": wait})
    elif isinstance(exc, drf.MethodNotAllowed):
        status = 405
        body = error_body("method_not_allowed", str(exc.detail))
    elif isinstance(exc, drf.UnsupportedMediaType):
        status = 415
        body = error_body("unsupported_media_type", str(exc.detail))
    elif isinstance(exc, drf.NotAcceptable):
        status = 406
        body = error_body("not_acceptable", str(exc.detail))
    elif isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        # The caller's mistake, not ours: a 4xx, logged as one line without a traceback.
        request = context.get("request")
        logger.warning(
            "request refused: %s",
            type(exc).__name__,
            extra={"request_id": getattr(request, "request_id", None) if request else None},
        )
        status, body = suspicious_error(exc)
    elif isinstance(exc, drf.APIException):
        status = exc.status_code
        body = error_body(str(exc.default_code), str(exc.detail))
    else:
        request = context.get("request")
        logger.exception(
            "unhandled error", extra={"request_id": getattr(request, "request_id", None) if request else None}
        )
        status = 500
        body = error_body("server_error", "Something went wrong on our side. It has been logged.")
    return Response(body, status=status, headers=headers)
