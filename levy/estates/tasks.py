"""Celery tasks of the estates app."""

from __future__ import annotations

from celery import shared_task

from levy.estates.imports import members_import


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_member_import(import_id: str) -> str | None:
    """Import one uploaded members CSV. Safe to deliver twice: a run claims the import
    first, and a second delivery finds it taken (or finished) and does nothing."""
    job = members_import(import_id=import_id)
    return job.status if job is not None else None
