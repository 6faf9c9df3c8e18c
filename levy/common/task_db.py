"""Database sessions in the Celery worker follow Django's rules, as requests do.

Celery's Django fixup closes every database connection before and after each task
unless ``CELERY_DB_REUSE_MAX`` is set. Every task then opened a new PostgreSQL session —
a process fork, authentication, cold catalog caches, its prepared statements gone — which
cost PostgreSQL about 10 ms of CPU per notification, more than the task's own queries.
With ``CELERY_DB_REUSE_MAX`` set (config/settings.py) the fixup closes them only every
that many tasks; in between, this receiver does around each task what Django does
around each request: ``close_old_connections()``, which closes a connection older than
``CONN_MAX_AGE``, one left inside a transaction, or one that failed and no longer
answers, so the next query opens a fresh one.
"""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections


def close_old_connections_around_task(sender: Any = None, **kwargs: Any) -> None:
    """``task_prerun`` and ``task_postrun`` receiver (worker processes)."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run in-process: the caller's connection and transaction, not the task's
    close_old_connections()
