"""Errors raised outside the API's views — an unknown path, a bad ``Host`` header, a
body over the upload limit read by middleware, a crash in middleware — answered in
the API's JSON error shape for every path under ``/api/``. Other paths (the admin,
the web pages) keep Django's HTML pages. Wired in ``config/urls.py``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.common import CommonMiddleware
from django.urls import Resolver404, resolve
from django.views import defaults

from levy.api.errors import error_body, suspicious_error

API_PREFIX = "/api/"


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _json(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def _slash_hint(request: HttpRequest) -> str | None:
    """The same path with a trailing slash, if that is an endpoint."""
    if request.path.endswith("/"):
        return None
    try:
        resolve(request.path_info + "/")
    except Resolver404:
        return None
    return request.path + "/"


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html") -> HttpResponse:
    if not is_api(request):
        return defaults.bad_request(request, exception, template_name)
    return suspicious_response(exception)


def suspicious_response(exception: Exception) -> JsonResponse:
    status, body = suspicious_error(exception)
    return JsonResponse(body, status=status)


def permission_denied(request: HttpRequest, exception: Exception, template_name: str = "403.html") -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception, template_name)
    return _json(403, "permission_denied", "You do not have permission to perform this action.")


def page_not_found(request: HttpRequest, exception: Exception, template_name: str = "404.html") -> HttpResponse:
    if not is_api(request):
        return defaults.page_not_found(request, exception, template_name)
    hint = _slash_hint(request)
    if hint is not None:
        return _json(404, "not_found", f"Not found. API paths end with a slash: {hint}", {"path": hint})
    return _json(404, "not_found", "Not found.")


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    if not is_api(request):
        return defaults.server_error(request, template_name)
    return _json(500, "server_error", "Something went wrong on our side. It has been logged.")


class LevyCommonMiddleware(CommonMiddleware):
    """Django's CommonMiddleware, except that a request under ``/api/`` other than GET
    or HEAD is never redirected to add a slash: the redirect would lose its body (and,
    with DEBUG, Django raises instead). It answers 404 naming the right path."""

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        if is_api(request) and request.method not in ("GET", "HEAD"):
            return False
        return super().should_redirect_with_slash(request)


GENERIC_ERRORS = {
    400: ("bad_request", "The request could not be understood."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("request_too_large", "The request body is larger than this server accepts."),
    500: ("server_error", "Something went wrong on our side. It has been logged."),
}


class ApiJsonErrorsMiddleware:
    """The last word under ``/api/``: an error response that is not JSON — Django's
    debug pages (the demo runs with DEBUG, where the handlers above are not used) or
    any page another layer produced — is replaced by the error shape for its status."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            if response.status_code == 404:
                return page_not_found(request, Exception())
            code, message = GENERIC_ERRORS.get(
                response.status_code, ("server_error" if response.status_code >= 500 else "bad_request", "")
            )
            replaced = _json(response.status_code, code, message or response.reason_phrase)
            for header in ("Retry-After", "WWW-Authenticate", "Allow"):
                if header in response:
                    replaced[header] = response[header]
            return replaced
        return response
