"""Celery tasks of the members app."""

from __future__ import annotations

from celery import shared_task

from levy.members.imports import members_import


# The name it had when it lived in levy.estates.tasks: an import queued by a web process
# of the previous release is still run by a worker of this one.
@shared_task(name="levy.estates.tasks.run_member_import", acks_late=True, reject_on_worker_lost=True)
def run_member_import(import_id: str) -> str | None:
    """Import one uploaded members CSV. Safe to deliver twice: a run claims the import
    first, and a second delivery finds it taken (or finished) and does nothing."""
    job = members_import(import_id=import_id)
    return job.status if job is not None else None
