"""The sign-in guard: limits on wrong passwords, per account and per client address.

Every way of signing in (the web page, the API's token endpoint) asks
:func:`signin_refusal` *before* checking the password, reports a wrong one with
:func:`signin_failed` and a right one with :func:`signin_succeeded`:

- **per account**: after ``LEVY_SIGNIN_ACCOUNT_FAILURES`` wrong passwords within
  ``LEVY_SIGNIN_LOCK_SECONDS`` the account is locked for that long, from whatever
  address the attempts came; the right password does not open a locked account. It
  unlocks by time, or by an admin (:func:`signin_unlock`, the Django admin's action).
- **per address**: one address may fail ``LEVY_SIGNIN_ADDRESS_FAILURES`` times in that
  time, whatever accounts it tries. The limit is high on purpose: estates sit behind
  shared gateways, and one person's typos must not lock out their neighbours.

The counters live in the shared cache (Redis), so every process sees the same ones.
If the cache cannot be reached, a per-process memory takes over: failures are still
limited (per process) rather than not at all. Accounts are keyed by a hash of the
lower-cased email, whether or not such an account exists, so the guard answers the same
for a real and an unknown address.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

logger = logging.getLogger("levy.signin")

_fallback = LocMemCache("levy-signin-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})

ACCOUNT_LOCKED = "account_locked"
ADDRESS_LIMITED = "address_limited"


@dataclass(frozen=True)
class SigninRefusal:
    """Why a sign-in is refused before its password is checked, and for how long."""

    code: str
    retry_after: int

    @property
    def message(self) -> str:
        minutes = max(1, (self.retry_after + 59) // 60)
        if self.code == ACCOUNT_LOCKED:
            return (
                f"Too many wrong passwords for this account: it is locked for {minutes} more minute(s). "
                "Reset your password by email, or ask an estate admin."
            )
        return f"Too many failed sign-ins from your network. Try again in {minutes} minute(s)."


def _account_key(email: str) -> str:
    digest = hashlib.sha256((email or "").strip().lower().encode()).hexdigest()[:32]
    return f"levy:signin:account:{digest}"


def _address_key(ip: str | None) -> str:
    return f"levy:signin:address:{ip or 'unknown'}"


def _run(operation: str, *args: Any) -> Any:
    """Run a cache operation on the shared cache, or on this process's memory if the
    shared cache is down."""
    try:
        return getattr(cache, operation)(*args)
    except Exception:  # the cache's client raises its own errors; any of them means "down"
        logger.warning("sign-in guard: shared cache unavailable, counting in this process", exc_info=True)
        return getattr(_fallback, operation)(*args)


def _locked_until(key: str, now: float) -> int | None:
    until = _run("get", f"{key}:lock")
    if until is not None and float(until) > now:
        return max(1, int(float(until) - now))
    return None


def _count_failure(key: str, limit: int, now: float) -> int | None:
    """Add one failure under ``key``; on reaching ``limit``, lock it. Returns the lock's
    seconds when it is (now) locked."""
    window = settings.LEVY_SIGNIN_LOCK_SECONDS
    _run("add", key, 0, window)
    try:
        count = int(_run("incr", key))
    except ValueError:  # expired between add and incr
        _run("set", key, 1, window)
        count = 1
    if count >= limit:
        _run("set", f"{key}:lock", now + window, window)
        _run("delete", key)
        return window
    return None


def signin_refusal(*, email: str, ip: str | None, now: float | None = None) -> SigninRefusal | None:
    """Whether a sign-in as ``email`` from ``ip`` is refused now, before any password is checked."""
    moment = time.time() if now is None else now
    wait = _locked_until(_account_key(email), moment)
    if wait is not None:
        return SigninRefusal(ACCOUNT_LOCKED, wait)
    wait = _locked_until(_address_key(ip), moment)
    if wait is not None:
        return SigninRefusal(ADDRESS_LIMITED, wait)
    return None


def signin_failed(*, email: str, ip: str | None, now: float | None = None) -> SigninRefusal | None:
    """Count a wrong password; returns the refusal that now applies, if any."""
    moment = time.time() if now is None else now
    account = _count_failure(_account_key(email), settings.LEVY_SIGNIN_ACCOUNT_FAILURES, moment)
    address = _count_failure(_address_key(ip), settings.LEVY_SIGNIN_ADDRESS_FAILURES, moment)
    if account is not None:
        logger.warning("sign-in: account locked after repeated failures")
        return SigninRefusal(ACCOUNT_LOCKED, account)
    if address is not None:
        logger.warning("sign-in: address %s limited after repeated failures", ip)
        return SigninRefusal(ADDRESS_LIMITED, address)
    return None


def signin_succeeded(*, email: str) -> None:
    """A right password (on an account that was not locked) forgets its earlier failures."""
    _run("delete", _account_key(email))


def signin_unlock(*, email: str) -> None:
    """Unlock an account now (an admin's action), forgetting its failures."""
    key = _account_key(email)
    _run("delete_many", [key, f"{key}:lock"])
