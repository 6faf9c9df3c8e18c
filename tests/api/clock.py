"""The wall clock the rate limiters read, moved forward in this process instead of
sleeping.

The limiters count in fixed windows of ``time.time() // period``. A burst that must
fit in one window used to sleep until the next window began when too little of the
current one was left — up to 30 s per test. ``to_next_window`` moves this process's
``time.time`` forward to the next window's start instead; ``real_clock`` (run after
every API test by ``tests/api/conftest.py``) puts the real one back. Only
``time.time`` moves: ``datetime.now``, ``timezone.now``, ``time.monotonic`` and every
other process (servers started by a test, Redis, PostgreSQL) keep the real time.
"""

from __future__ import annotations

import time

REAL_TIME = time.time


def to_next_window(period: int, needed: float) -> None:
    """Make sure at least ``needed`` seconds of the current window are left: if fewer
    are, move ``time.time`` to just after the next window starts."""
    remaining = period - (time.time() % period)
    if remaining >= needed:
        return
    shift = (time.time() - REAL_TIME()) + remaining + 0.1

    def shifted() -> float:
        return REAL_TIME() + shift

    time.time = shifted


def real_clock() -> None:
    time.time = REAL_TIME
