"""The caller's address behind a reverse proxy (rate limits per IP, the audit trail)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from levy.common.origin import client_ip, origin_of


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "203.0.113.9", "", "203.0.113.9"),
        # not from a trusted proxy: a client's own X-Forwarded-For is ignored
        ([], "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        (["10.0.0.2"], "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # from the proxy: the address it appended
        (["10.0.0.2"], "10.0.0.2", "198.51.100.7", "198.51.100.7"),
        # a client that forges an entry only adds to the left of the real one
        (["10.0.0.2"], "10.0.0.2", "1.2.3.4, 198.51.100.7", "198.51.100.7"),
        # two proxies in a row are both skipped
        (["10.0.0.2", "10.0.0.3"], "10.0.0.2", "198.51.100.7, 10.0.0.3", "198.51.100.7"),
        # the proxy forwarded nothing usable
        (["10.0.0.2"], "10.0.0.2", "", "10.0.0.2"),
        (["10.0.0.2"], "10.0.0.2", "198.51.100.7, not-an-ip", "10.0.0.2"),
    ],
)
def test_client_ip(settings, trusted: list[str], remote: str, forwarded: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    settings.LEVY_TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded, HTTP_USER_AGENT="curl/8")
    assert client_ip(request) == expected
    assert origin_of(request).ip == expected
    assert origin_of(request).user_agent == "curl/8"
