"""The web worker's heartbeat, for responses that stream for a long time.

gunicorn's arbiter kills a worker that has not reported itself alive for ``timeout``
seconds (30 by default): that is how a hung request is found. A sync worker reports
only between requests, so a streamed response that is still sending after 30 s — a
CSV export of 50,000 rows — was killed mid-file although it was making progress.
``config/gunicorn.conf.py`` registers the worker's ``notify`` here when the worker
starts; a streaming response calls :func:`still_working` each time it sends a block,
so the timeout still catches a response that stops making progress, but no longer one
that is busy sending. Outside gunicorn (tests, runserver, Celery) nothing is
registered and the call does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_notify: Callable[[], None] | None = None


def register(notify: Callable[[], None]) -> None:
    """Called once per gunicorn worker, with that worker's ``notify``."""
    global _notify
    _notify = notify


def still_working() -> None:
    """Tell the arbiter this worker is alive and making progress."""
    if _notify is not None:
        _notify()
