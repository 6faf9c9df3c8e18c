"""``Idempotency-Key`` for money-moving requests.

The record is claimed in its own short transaction before the work starts, so a
concurrent duplicate sees it at once (409) instead of racing the first request. The
services also take the key, so even a request whose record was lost (a crash between
the payment's commit and the record's) cannot move money twice: the ledger's
(wallet, key) constraint returns the first entry.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from levy.api.errors import ApiError, exception_handler
from levy.api.models import IdempotencyRecord
from levy.common.db import insert_unless_exists, update_row
from levy.estates.access import EstateAccess

HEADER = "Idempotency-Key"
MAX_LENGTH = 128
# A record still in progress after this long belongs to a request that died; a retry
# may take it over (the ledger's own key check still prevents a second movement).
STALE_AFTER = datetime.timedelta(seconds=60)


def request_key(request: Request) -> str:
    key = (request.headers.get(HEADER) or "").strip()
    if not key:
        raise ApiError(400, "idempotency_key_required", f"Send an {HEADER} header with every money-moving request.")
    if len(key) > MAX_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            "validation_error",
            "Invalid idempotency key.",
            {"fields": {HEADER: [f"Use at most {MAX_LENGTH} printable characters."]}},
        )
    return key


def fingerprint(request: Request) -> str:
    try:
        body: Any = request.data
        if hasattr(body, "dict"):
            body = body.dict()
        canonical = json.dumps(body, sort_keys=True, default=str)
    except Exception:
        canonical = request.body.decode("utf-8", "replace") if request.body else ""
    raw = f"{request.method}\n{request.path}\n{canonical}"
    return hashlib.sha256(raw.encode()).hexdigest()


def run_idempotent(
    request: Request, access: EstateAccess, handler: Callable[[str], Response], context: dict[str, Any]
) -> Response:
    key = request_key(request)
    digest = fingerprint(request)
    record = _claim(access, key, digest)
    if isinstance(record, Response):
        return record
    try:
        response = handler(key)
    except Exception as exc:
        # Rendered here, not by DRF, so that an error answer is stored and replayed too.
        response = exception_handler(exc, context)
    if response.status_code >= 500:
        # Nothing to replay: let the client try again with the same key.
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return response
    update_row(
        IdempotencyRecord,
        record.pk,
        state=IdempotencyRecord.State.COMPLETED,
        response_status=response.status_code,
        response_body=response.data,
        completed_at=timezone.now(),
    )
    return response


def _claim(access: EstateAccess, key: str, digest: str) -> IdempotencyRecord | Response:
    # One autocommitted INSERT … ON CONFLICT DO NOTHING: committed at once, no savepoint.
    record = IdempotencyRecord(cluster=access.cluster, user=access.user, key=key, fingerprint=digest)
    if insert_unless_exists(record, "cluster", "user", "key"):
        return record
    existing = IdempotencyRecord.objects.get(cluster=access.cluster, user=access.user, key=key)
    if existing.fingerprint != digest:
        raise ApiError(422, "idempotency_key_reused", "This idempotency key was already used for a different request.")
    if existing.state == IdempotencyRecord.State.COMPLETED:
        response = Response(existing.response_body, status=existing.response_status)
        response["Idempotent-Replayed"] = "true"
        return response
    if timezone.now() - existing.created_at < STALE_AFTER:
        raise ApiError(409, "idempotency_key_in_use", "A request with this idempotency key is still being processed.")
    taken = IdempotencyRecord.objects.filter(pk=existing.pk, created_at=existing.created_at).update(
        created_at=timezone.now()
    )
    if not taken:
        raise ApiError(409, "idempotency_key_in_use", "A request with this idempotency key is still being processed.")
    existing.refresh_from_db()
    return existing
