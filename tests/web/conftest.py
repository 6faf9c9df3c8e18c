from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from levy.estates.models import Membership
from tests.conftest import committed


class Browser:
    """A Django test client signed in as one person (or anonymous), with CSRF checks on
    as in a real browser: a form must carry the token its page rendered."""

    def __init__(self, user: Any = None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        if user is not None:
            self.client.force_login(user)

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        with committed():
            return self.client.get(path, params, headers=headers)

    def csrf_token(self) -> str:
        token = self.client.cookies.get("csrftoken")
        if token is None:
            self.client.get("/password/forgot/")
            token = self.client.cookies["csrftoken"]
        return str(token.value)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **extra: Any) -> Any:
        body = dict(data or {})
        if csrf:
            body["csrfmiddlewaretoken"] = self.csrf_token()
        with committed():
            return self.client.post(path, body, **extra)


def browser_as(member: Membership | Any | None) -> Browser:
    if member is None:
        return Browser()
    return Browser(member.user if isinstance(member, Membership) else member)


def estate_url(estate: Any, page: str = "") -> str:
    return f"/estates/{estate.cluster.pk}/{page}"


def count_queries(fn: Any) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return len(ctx.captured_queries), result


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    cache.clear()
