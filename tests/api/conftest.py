from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from levy.estates.models import Membership
from tests.api import clock
from tests.conftest import committed


class Api:
    """An HTTP client signed in as one person (or anonymous), speaking JSON."""

    def __init__(self, user: Any = None) -> None:
        self.client = APIClient()
        if user is not None:
            token = RefreshToken.for_user(user).access_token
            self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    # Each request runs what it scheduled for after its commit, as a real request does.

    def get(self, path: str, **params: Any) -> Any:
        with committed():
            return self.client.get(path, params)

    def post(self, path: str, data: Any = None, *, key: str | None = None, **extra: Any) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        with committed():
            return self.client.post(path, data or {}, format="json", headers=headers, **extra)

    def post_multipart(self, path: str, data: Any) -> Any:
        with committed():
            return self.client.post(path, data, format="multipart")

    def patch(self, path: str, data: Any) -> Any:
        with committed():
            return self.client.patch(path, data, format="json")


def api_as(member: Membership | Any | None) -> Api:
    if member is None:
        return Api()
    return Api(member.user if isinstance(member, Membership) else member)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    cache.clear()


def base(estate: Any) -> str:
    """The estate-scoped API prefix."""
    return f"/api/v1/clusters/{estate.cluster.pk}"


def make_past_due(bill: Any, days: int = 3) -> Any:
    """Bills cannot be created with a past due date: move it back in the database."""
    from levy.billing.models import Bill
    from levy.billing.selectors import estate_today

    Bill.objects.filter(pk=bill.pk).update(due_date=estate_today() - datetime.timedelta(days=days))
    bill.refresh_from_db()
    return bill


def assert_error(response: Any, status: int, code: str, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """The response is the one error shape of api.md, with this status and code, naming
    ``fields`` in details.fields."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    for field in fields:
        assert field in body["error"]["details"]["fields"], body
    return body


def walk(api: Any, path: str, *, max_pages: int = 200, **params: Any) -> list[dict[str, Any]]:
    """Follow ``next`` from the first page to the last (bounded), checking the envelope."""
    rows: list[dict[str, Any]] = []
    response = api.get(path, **params)
    for _ in range(max_pages):
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next", "previous"}
        rows.extend(body["results"])
        if body["next"] is None:
            return rows
        response = api.client.get(body["next"])
    raise AssertionError(f"pagination did not end within {max_pages} pages")


@pytest.fixture(autouse=True)
def _real_clock_after_the_test() -> Any:
    """Put back the real ``time.time`` that ``clock.move_forward`` may have moved."""
    yield
    clock.real_clock()
