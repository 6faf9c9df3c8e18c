"""A form that creates something runs once per rendering, whatever the browser sends.

The form carries a key made when it was drawn (a hidden field). The first submit claims
the key — the API's ``IdempotencyRecord`` for (estate, person, key), inserted in its own
autocommitted statement before the work starts — and stores what it made. A second
submit of the same form (a double click, a resubmit after a slow answer, the back
button) finds the key: it waits for the first to finish and answers with the same
result instead of making a second one. Work that fails on the person's input releases
the key, so the corrected form can be sent again.

Money forms need no record: their services take the key themselves and the ledger's
(wallet, key) constraint returns the first entry (``wallet_credit``,
``bill_payment_refund``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from levy.api.idempotency import STALE_AFTER
from levy.api.models import IdempotencyRecord
from levy.common.db import insert_unless_exists, update_row
from levy.estates.access import EstateAccess

# How long a second submit waits for the first before saying it is still running.
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.1
RELEASED = "released"


@dataclass(frozen=True)
class Once:
    """What a submit of a keyed form is to do: ``result`` is the first submit's stored
    result (do nothing, show it); ``refused`` says why nothing can be done (the key was
    used for a different form, or the first submit is still running); otherwise run the
    work (``fresh``)."""

    result: dict[str, Any] | None = None
    refused: str | None = None

    @property
    def fresh(self) -> bool:
        return self.result is None and self.refused is None


def fingerprint(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def submit_once(
    *, access: EstateAccess, key: str, data: dict[str, Any], work: Callable[[], dict[str, Any]]
) -> tuple[Once, dict[str, Any] | None]:
    """Run ``work`` once for ``key``. Returns how this submit went and, when it ran the
    work, the work's result (stored for the submits that follow). An exception from
    ``work`` releases the key and propagates."""
    digest = fingerprint(data)
    record = IdempotencyRecord(cluster=access.cluster, user=access.user, key=key, fingerprint=digest)
    while not insert_unless_exists(record, "cluster", "user", "key"):
        earlier = _earlier(access, key, digest)
        if earlier.refused != RELEASED:
            return earlier, None
        record = IdempotencyRecord(cluster=access.cluster, user=access.user, key=key, fingerprint=digest)
    try:
        result = work()
    except BaseException:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        raise
    update_row(
        IdempotencyRecord,
        record.pk,
        state=IdempotencyRecord.State.COMPLETED,
        response_status=200,
        response_body=result,
        completed_at=timezone.now(),
    )
    return Once(), result


def _earlier(access: EstateAccess, key: str, digest: str) -> Once:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        existing = IdempotencyRecord.objects.filter(cluster=access.cluster, user=access.user, key=key).first()
        if existing is None:
            # The first submit failed and released the key: this one may try.
            return Once(refused=RELEASED)
        if existing.fingerprint != digest:
            return Once(refused="This form was already sent with other details.")
        if existing.state == IdempotencyRecord.State.COMPLETED:
            return Once(result=existing.response_body or {})
        if time.monotonic() > deadline or timezone.now() - existing.created_at > STALE_AFTER:
            return Once(
                refused="This form is still being processed. Look at the list in a moment before sending it again."
            )
        time.sleep(POLL_SECONDS)
