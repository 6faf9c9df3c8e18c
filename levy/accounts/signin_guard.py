"""Sign-in limits, for every way of signing in with a password (the API's token
endpoint, the web sign-in page) and for token refresh. Decision 0017.

- **Per account, in the database** (``SignInState``): after
  ``LEVY_SIGN_IN_LOCKOUT_FAILURES`` wrong passwords in a row (each within
  ``LEVY_SIGN_IN_FAILURE_MEMORY_MINUTES`` of the previous one) the account is locked
  for ``LEVY_SIGN_IN_LOCKOUT_MINUTES``. While locked, every sign-in is refused — the
  right password too — until the time passes or an admin calls ``account_unlock``.
  An email that has no account is counted the same way in the cache, so the answer
  never tells whether an account exists.
- **Per client address**: failed sign-ins only (scope ``sign_in_failures``). A
  successful sign-in is never counted, so the honest traffic of a shared gateway —
  many people, few mistakes — stays far below the limit.
- **Token refresh** has limits of its own: refreshes per person (``token_refresh``)
  and failed refreshes per address (``token_refresh_failures``). ``token_refresh``
  is the whole refresh: the token, the limits, and the account still active.

The address and refresh counters live in the cache (Redis), shared by every process.
If the cache cannot be reached, each process counts on its own (a fallback in memory)
rather than not at all.

A sign-in page calls ``sign_in_authenticate`` (the whole sequence) or the steps it
is made of: ``sign_in_check``, then Django's ``authenticate``, then
``sign_in_failed`` or ``sign_in_succeeded``.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from levy.common.errors import AccountLockedError, NotAuthenticatedError, TooManyAttemptsError
from levy.common.origin import Origin
from levy.common.ratelimit import incr_counters, rate_for

if TYPE_CHECKING:
    from levy.accounts.models import User
    from levy.estates.models import Cluster

logger = logging.getLogger("levy.signin")

SIGN_IN_FAILURES = "sign_in_failures"
TOKEN_REFRESH = "token_refresh"  # noqa: S105 - a rate-limit scope
TOKEN_REFRESH_FAILURES = "token_refresh_failures"  # noqa: S105 - a rate-limit scope
WRONG_CREDENTIALS = "No active account found with the given credentials"


# --- counters: the cache, or this process when the cache is down ----------------------------


class _LocalCounters:
    """Fixed-window counters in this process's memory, used while the cache is down."""

    MAX_KEYS = 50_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def get(self, key: str, now: float) -> int:
        with self._lock:
            expires, count = self._counts.get(key, (0.0, 0))
            return count if expires > now else 0

    def incr(self, key: str, ttl: float, now: float) -> int:
        with self._lock:
            expires, count = self._counts.get(key, (0.0, 0))
            if expires <= now:
                if len(self._counts) >= self.MAX_KEYS:
                    self._prune(now)
                expires, count = now + ttl, 0
            self._counts[key] = (expires, count + 1)
            return count + 1

    def set(self, key: str, value: int, ttl: float, now: float) -> None:
        with self._lock:
            self._counts[key] = (now + ttl, value)

    def delete(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def _prune(self, now: float) -> None:
        for key in [k for k, (expires, _) in self._counts.items() if expires <= now]:
            del self._counts[key]
        if len(self._counts) >= self.MAX_KEYS:  # a flood of distinct keys: forget the oldest half
            for key in sorted(self._counts, key=lambda k: self._counts[k][0])[: self.MAX_KEYS // 2]:
                del self._counts[key]


local_counters = _LocalCounters()


def _cache_unavailable() -> None:
    logger.warning("sign-in counters: cache unavailable; counting in this process", exc_info=True)


def _redis() -> Any | None:
    """The Redis client behind the cache, or None when the cache is not Redis (the demo).
    The counters use raw keys, as the rate limiter does, so both read the same ones."""
    try:
        from django_redis import get_redis_connection

        return get_redis_connection("default")
    except (ImportError, NotImplementedError):
        return None


def _count_get(key: str, now: float) -> int:
    try:
        client = _redis()
        return int((client.get(key) if client is not None else cache.get(key)) or 0)
    except Exception:
        _cache_unavailable()
        return local_counters.get(key, now)


def _count_incr(key: str, ttl: int, now: float) -> int:
    try:
        return incr_counters([(key, ttl)])[0]
    except Exception:
        _cache_unavailable()
        return local_counters.incr(key, ttl, now)


def _count_set(key: str, value: int, ttl: int, now: float) -> None:
    try:
        client = _redis()
        if client is not None:
            client.set(key, value, ex=ttl)
        else:
            cache.set(key, value, ttl)
    except Exception:
        _cache_unavailable()
        local_counters.set(key, value, ttl, now)


def _count_delete(key: str) -> None:
    local_counters.delete(key)
    try:
        client = _redis()
        if client is not None:
            client.delete(key)
        else:
            cache.delete(key)
    except Exception:
        _cache_unavailable()


@dataclass(frozen=True)
class Window:
    limit: int
    period: int
    key: str
    wait: float


def _window(scope: str, subject: str, now: float) -> Window | None:
    if not settings.LEVY_RATE_LIMITS_ENABLED:
        return None
    rate = rate_for(scope)
    if rate is None:
        return None
    start = int(now // rate.period)
    return Window(rate.limit, rate.period, f"levy:signin:{scope}:{subject}:{start}", rate.period - (now % rate.period))


def limit_wait(*, scope: str, subject: str) -> float | None:
    """Seconds until ``subject`` may try again in ``scope``, or None. Reads only."""
    now = time.time()
    window = _window(scope, subject, now)
    if window is None:
        return None
    return window.wait if _count_get(window.key, now) >= window.limit else None


def limit_count(*, scope: str, subject: str) -> float | None:
    """Count one event of ``subject`` in ``scope``; the wait if that reached the limit."""
    now = time.time()
    window = _window(scope, subject, now)
    if window is None:
        return None
    return window.wait if _count_incr(window.key, window.period + 1, now) >= window.limit else None


def _address(ip: str | None) -> str:
    return f"ip:{ip or 'unknown'}"


# --- accounts ------------------------------------------------------------------------------------


def _lockout_failures() -> int:
    return int(settings.LEVY_SIGN_IN_LOCKOUT_FAILURES)


def _lockout_duration() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.LEVY_SIGN_IN_LOCKOUT_MINUTES)


def _failure_memory() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.LEVY_SIGN_IN_FAILURE_MEMORY_MINUTES)


def _normalized(email: str) -> str:
    return (email or "").strip().lower()


def _unknown_key(email: str, part: str) -> str:
    digest = hashlib.sha256(_normalized(email).encode()).hexdigest()[:32]
    return f"levy:signin:unknown:{part}:{digest}"


@dataclass(frozen=True)
class AccountState:
    user_id: Any | None
    failures: int
    locked_for: float | None  # seconds left of the lock


def account_state(*, email: str) -> AccountState:
    """The account an email signs in to, its failures in a row and the time left of its
    lock (None when not locked). One query; an unknown email is read from the cache."""
    from levy.accounts.models import User

    row = (
        User.objects.alias(email_lower=Lower("email"))
        .filter(email_lower=_normalized(email))
        .values_list("pk", "sign_in_state__failures", "sign_in_state__locked_until")
        .first()
    )
    if row is None:
        now = time.time()
        unknown_until = _count_get(_unknown_key(email, "locked"), now)
        locked_for = unknown_until - now if unknown_until > now else None
        return AccountState(None, _count_get(_unknown_key(email, "failures"), now), locked_for)
    user_id, failures, locked_until = row
    left = (locked_until - timezone.now()).total_seconds() if locked_until is not None else 0.0
    return AccountState(user_id, failures or 0, left if left > 0 else None)


def account_failure_record(*, email: str, origin: Origin = Origin()) -> float | None:
    """Count one wrong password for the account of ``email``. Returns the seconds of
    the lock when the account is (now or already) locked, else None."""
    from levy.accounts.models import SignInState, User

    user_id = (
        User.objects.alias(email_lower=Lower("email")).filter(email_lower=_normalized(email)).values_list("pk").first()
    )
    if user_id is None:
        return _unknown_failure_record(email)
    now = timezone.now()
    with transaction.atomic():
        SignInState.objects.bulk_create([SignInState(user_id=user_id[0])], ignore_conflicts=True)
        state = SignInState.objects.select_for_update().get(user_id=user_id[0])
        if state.locked_until is not None and state.locked_until > now:
            return (state.locked_until - now).total_seconds()
        stale = state.last_failure_at is not None and state.last_failure_at < now - _failure_memory()
        if state.locked_until is not None or stale:
            state.failures = 0
            state.locked_until = None
        state.failures += 1
        state.last_failure_at = now
        locked = state.failures >= _lockout_failures()
        if locked:
            state.locked_until = now + _lockout_duration()
            state.lock_count += 1
            _audit("account.lock", user_id[0], actor=None, origin=origin, data={"failures": state.failures})
        state.save()
    return _lockout_duration().total_seconds() if locked else None


def _unknown_failure_record(email: str) -> float | None:
    now = time.time()
    lock = _lockout_duration().total_seconds()
    failures = _count_incr(_unknown_key(email, "failures"), int(_failure_memory().total_seconds()), now)
    if failures < _lockout_failures():
        return None
    _count_delete(_unknown_key(email, "failures"))
    _count_set(_unknown_key(email, "locked"), int(now + lock), int(lock) + 1, now)
    return lock


def account_success_record(*, user_id: Any) -> None:
    """A right password: the wrong ones before it no longer count."""
    from levy.accounts.models import SignInState

    SignInState.objects.filter(user_id=user_id, failures__gt=0, locked_until__isnull=True).update(
        failures=0, last_failure_at=None
    )


def account_unlock(
    *, user: User, actor: User | None, origin: Origin = Origin(), cluster: Cluster | None = None
) -> bool:
    """Lift the lock (and forget the failures) of ``user``'s account. True when there
    was a lock or failures to clear; audited then."""
    from levy.accounts.models import SignInState

    with transaction.atomic():
        was = SignInState.objects.select_for_update().filter(user_id=user.pk).first()
        if was is None or (was.failures == 0 and was.locked_until is None):
            return False
        SignInState.objects.filter(user_id=user.pk).update(failures=0, locked_until=None, last_failure_at=None)
        _audit(
            "account.unlock",
            user.pk,
            actor=actor,
            origin=origin,
            cluster=cluster,
            data={"failures": was.failures, "was_locked": bool(was.locked_until and was.locked_until > timezone.now())},
        )
    return True


def _audit(
    action: str,
    user_id: Any,
    *,
    actor: User | None,
    origin: Origin,
    data: dict[str, Any],
    cluster: Cluster | None = None,
) -> None:
    from levy.accounts.models import User
    from levy.audit.services import audit_record

    audit_record(action=action, target=User(pk=user_id), actor=actor, cluster=cluster, origin=origin, data=data)


# --- the sequence ---------------------------------------------------------------------------------


def sign_in_check(*, email: str, ip: str | None) -> AccountState:
    """Before the password is checked: refuse (``TooManyAttemptsError``) when the
    address has failed too often, or (``AccountLockedError``) when the account is
    locked. Returns the account's state for ``sign_in_succeeded``."""
    wait = limit_wait(scope=SIGN_IN_FAILURES, subject=_address(ip))
    if wait is not None:
        raise TooManyAttemptsError(retry_after=wait)
    state = account_state(email=email)
    if state.locked_for is not None:
        raise AccountLockedError(retry_after=state.locked_for)
    return state


def sign_in_failed(*, email: str, origin: Origin) -> None:
    """After a wrong password (or an unknown or inactive account): count it against the
    address and the account, then raise ``AccountLockedError`` if that locked the
    account, else ``NotAuthenticatedError``."""
    limit_count(scope=SIGN_IN_FAILURES, subject=_address(origin.ip))
    locked_for = account_failure_record(email=email, origin=origin)
    if locked_for is not None:
        raise AccountLockedError(retry_after=locked_for)
    raise NotAuthenticatedError(WRONG_CREDENTIALS)


def sign_in_succeeded(*, user: User, state: AccountState) -> None:
    """After the right password: clear the account's failures (a write only if any)."""
    if state.failures:
        account_success_record(user_id=user.pk)


def sign_in_authenticate(*, request: Any, email: str, password: str, origin: Origin) -> User:
    """The whole sign-in: the limits, Django's authentication backends, the counting.
    Returns the user, or raises ``TooManyAttemptsError`` (429 ``rate_limited``),
    ``AccountLockedError`` (429 ``account_locked``) or ``NotAuthenticatedError`` (401)."""
    state = sign_in_check(email=email, ip=origin.ip)
    user = authenticate(request, username=email, password=password)
    if user is None:
        sign_in_failed(email=email, origin=origin)
        raise NotAuthenticatedError(WRONG_CREDENTIALS)  # not reached: sign_in_failed raises
    sign_in_succeeded(user=user, state=state)
    return user


# --- token refresh --------------------------------------------------------------------------------


def token_refresh_check(*, ip: str | None) -> None:
    """Before a refresh token is read: refuse when the address has sent too many bad ones."""
    wait = limit_wait(scope=TOKEN_REFRESH_FAILURES, subject=_address(ip))
    if wait is not None:
        raise TooManyAttemptsError(retry_after=wait)


def token_refresh_failed(*, ip: str | None) -> None:
    """A refresh token that was not valid: counted against the address."""
    limit_count(scope=TOKEN_REFRESH_FAILURES, subject=_address(ip))


def token_refresh_counted(*, user_id: Any) -> None:
    """A valid refresh: counted against the person it belongs to; refused past the limit."""
    now = time.time()
    window = _window(TOKEN_REFRESH, f"u:{user_id}", now)
    if window is not None and _count_incr(window.key, window.period + 1, now) > window.limit:
        raise TooManyAttemptsError(retry_after=window.wait)


def account_active(*, user_id: Any) -> bool:
    """Whether ``user_id`` names an account that may still sign in: it exists and is
    active. An id that is not a user id at all names none."""
    from levy.accounts.models import User

    try:
        return User.objects.filter(pk=user_id, is_active=True).exists()
    except (DjangoValidationError, ValueError):
        return False


def token_refresh(*, refresh: str, ip: str | None) -> str:
    """A new access token for the refresh token ``refresh``, sent from ``ip`` (after
    :func:`token_refresh_check`). Raises ``NotAuthenticatedError`` (401) for a token that
    is not a valid refresh token, or whose account is gone or inactive — both counted
    against the address — and ``TooManyAttemptsError`` (429 ``rate_limited``) past the
    person's refreshes."""
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # the stubs want a Token; the library takes its text too
    except TokenError as exc:
        token_refresh_failed(ip=ip)
        raise NotAuthenticatedError(str(exc.args[0])) from None
    user_id = str(token.payload.get(jwt_settings.USER_ID_CLAIM, ""))
    token_refresh_counted(user_id=user_id)
    if not account_active(user_id=user_id):
        token_refresh_failed(ip=ip)
        raise NotAuthenticatedError("No active account found for the given token.")
    return str(token.access_token)
