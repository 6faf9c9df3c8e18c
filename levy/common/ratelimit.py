"""Rate limits with counters shared by every server process (Redis).

Each request is counted against the caller (per user, or per client IP before sign-in)
in the general ``user`` scope and, when the view names one, in its own tighter scope
(``pay``, ``dispute``, …); estate-scoped requests also count against the estate.
Fixed windows, one atomic INCR per counter. If Redis cannot be reached the request is
served and the failure is logged: an outage of the cache must not become an outage of
billing.

The API's views, the pages and the sign-in guard (``levy.accounts.signin_guard``) all
count here, which is why it sits in ``levy.common`` rather than in any one of them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from levy.common import origin

logger = logging.getLogger("levy.ratelimit")

PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        count, _, unit = text.partition("/")
        return cls(limit=int(count), period=PERIODS[unit.strip().lower()])


def rate_for(scope: str) -> Rate | None:
    text = settings.LEVY_RATE_LIMITS.get(scope)
    return Rate.parse(text) if text else None


def incr_counters(keys: list[tuple[str, int]]) -> list[int]:
    """Atomically add one to each key (creating it with its TTL) and return the counts:
    one round trip to Redis whatever the number of keys."""
    try:
        from django_redis import get_redis_connection

        client = get_redis_connection("default")
    except (ImportError, NotImplementedError):
        client = None
    if client is not None:
        pipe = client.pipeline()
        for key, ttl in keys:
            pipe.incr(key)
            pipe.expire(key, ttl, nx=True)
        results = pipe.execute()
        return [int(count) for count in results[::2]]
    counts = []
    for key, ttl in keys:
        cache.add(key, 0, ttl)
        counts.append(int(cache.incr(key)))
    return counts


def hit(scope: str, subject: str, now: float | None = None) -> float | None:
    """Count one request of ``subject`` in ``scope``. Returns None when allowed, or the
    seconds to wait when the limit is exceeded."""
    return hit_all([(scope, subject)], now)


def hit_all(hits: list[tuple[str, str]], now: float | None = None) -> float | None:
    """Count one request against each (scope, subject), in one round trip. Returns None
    when every limit allows it, or the longest wait among those exceeded."""
    if not settings.LEVY_RATE_LIMITS_ENABLED:
        return None
    now = time.time() if now is None else now
    counted = []
    for scope, subject in hits:
        rate = rate_for(scope)
        if rate is not None:
            key = f"levy:rl:{scope}:{subject}:{int(now // rate.period)}"
            counted.append((rate, key))
    if not counted:
        return None
    try:
        counts = incr_counters([(key, rate.period + 1) for rate, key in counted])
    except Exception:  # any cache failure: serve the request, say so in the logs
        logger.warning("rate limiter unavailable; request allowed", exc_info=True)
        return None
    waits = [
        rate.period - (now % rate.period)
        for (rate, _), count in zip(counted, counts, strict=True)
        if count > rate.limit
    ]
    return max(waits) if waits else None


def client_ip(request: Any) -> str:
    return origin.client_ip(request) or "unknown"


def subject_of(request: Any) -> str:
    user = getattr(request, "user", None)
    return f"u:{user.pk}" if user is not None and user.is_authenticated else f"ip:{client_ip(request)}"


def check_scope(request: Any, scope: str) -> float | None:
    """Count the request against one more scope (e.g. bill creation on a list URL)."""
    return hit(scope, subject_of(request))


def check(request: Any, *, scope: str | None) -> float | None:
    """Apply the caller's limits (general, and the view's scope); the longest wait wins."""
    subject = subject_of(request)
    return hit_all([("user", subject), (scope, subject)] if scope else [("user", subject)])
