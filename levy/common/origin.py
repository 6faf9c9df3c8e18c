from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Origin:
    """Where an action came from, recorded on acknowledgements and audit events."""

    ip: str | None = None
    user_agent: str = ""


def client_ip(request: Any) -> str | None:
    """The caller's address. Behind a reverse proxy, ``REMOTE_ADDR`` is the proxy's: when
    it is one of ``LEVY_TRUSTED_PROXIES``, the address is read from
    ``X-Forwarded-For``, right to left, skipping the trusted proxies (the entries a
    client wrote itself are further left and are never reached past an untrusted one)."""
    remote = request.META.get("REMOTE_ADDR") or None
    trusted = set(settings.LEVY_TRUSTED_PROXIES)
    if not remote or remote not in trusted:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for address in reversed(forwarded):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return remote  # a malformed chain: trust nothing in it
        if address not in trusted:
            return address
    return remote


def origin_of(request: Any) -> Origin:
    """The origin of an HTTP request: the caller's address and user agent."""
    return Origin(ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")[:1000])
