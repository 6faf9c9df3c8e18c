"""Celery tasks of payments. Safe to run twice: crediting is exactly once by construction."""

from __future__ import annotations

from celery import shared_task

from levy.payments.services import topups_sweep


@shared_task
def sweep_top_ups() -> dict[str, int]:
    """Beat (LEVY_TOPUP_SWEEP_EVERY_SECONDS): verify pending top-ups nobody confirmed,
    expire the abandoned ones."""
    return topups_sweep()
