"""The wall clock the rate limiters read, moved forward in this process instead of
sleeping.

The limiters count in fixed windows of ``time.time() // period``. A burst that must
fit in one window used to sleep until the next window began when too little of the
current one was left — up to 30 s per test. ``start_of_a_fresh_window``
(``test_rate_limits.py``) now moves this process's ``time.time`` to the next window's
start instead, with ``move_forward``; ``real_clock`` (run after
every API test by ``tests/api/conftest.py``) puts the real one back. Only
``time.time`` moves: ``datetime.now``, ``timezone.now``, ``time.monotonic`` and every
other process (servers started by a test, Redis, PostgreSQL) keep the real time.
"""

from __future__ import annotations

import time

REAL_TIME = time.time


def move_forward(seconds: float) -> None:
    """Move this process's ``time.time`` ``seconds`` ahead of where it reads now."""
    shift = (time.time() - REAL_TIME()) + seconds

    def shifted() -> float:
        return REAL_TIME() + shift

    time.time = shifted


def real_clock() -> None:
    time.time = REAL_TIME
