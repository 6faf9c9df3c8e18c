"""Storing notifications: one call per event, set-based for any number of recipients.

``notify`` takes the recipients as a queryset of user ids, so an estate-wide bill
becomes one ``INSERT … SELECT`` on PostgreSQL however many residents the estate has.
``ON CONFLICT DO NOTHING`` on (recipient, event_key) makes every call idempotent:
running the same event again delivers nothing twice.
"""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from levy.notifications.events import EVENT_SPECS, render
from levy.notifications.models import Notification

if TYPE_CHECKING:
    from levy.billing.models import Bill
    from levy.estates.models import Cluster

BATCH_SIZE = 2000


def bill_context(bill: Bill) -> dict[str, Any]:
    """What a person needs to act on a bill: title, amount, currency, due date, ids."""
    return {
        "cluster_id": str(bill.cluster_id),
        "bill_id": str(bill.pk),
        "bill_reference": bill.reference,
        "bill_title": bill.title,
        "amount": f"{bill.amount:.2f}",
        "currency": bill.cluster.currency,
        "due_date": bill.due_date.isoformat(),
        "is_cluster_wide": bill.user_id is None,
    }


def _json_ready(context: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{value:.2f}"
        if isinstance(value, (datetime.date, datetime.datetime, uuid.UUID)):
            return value.isoformat() if not isinstance(value, uuid.UUID) else str(value)
        return value

    return {key: convert(value) for key, value in context.items()}


def notify(
    *,
    event: str,
    cluster: Cluster | None,
    recipient_ids: QuerySet[Any] | list[Any],
    context: dict[str, Any],
    event_key: str,
) -> int:
    """Store ``event`` in the inbox of every recipient, at most once per recipient per
    ``event_key``. ``recipient_ids`` is a queryset yielding user ids (kept in the
    database, e.g. ``.values_list("user_id", flat=True)``) or a short list.
    Returns the number of notifications stored now."""
    spec = EVENT_SPECS[event]
    payload = _json_ready(context)
    title, body = render(event, payload)
    now = timezone.now()
    common = {
        "cluster_id": cluster.pk if cluster is not None else None,
        "event": event,
        "event_key": event_key,
        "priority": spec.priority.value,
        "title": title,
        "body": body,
        "context": payload,
        "created_at": now,
    }
    if isinstance(recipient_ids, QuerySet) and connection.vendor == "postgresql":
        return _insert_select(recipient_ids, common)
    ids = list(recipient_ids)
    created = 0
    for start in range(0, len(ids), BATCH_SIZE):
        batch = ids[start : start + BATCH_SIZE]
        already = set(
            Notification.objects.filter(event_key=event_key, recipient_id__in=batch).values_list(
                "recipient_id", flat=True
            )
        )
        rows = [Notification(recipient_id=user_id, **common) for user_id in batch if user_id not in already]
        Notification.objects.bulk_create(rows, ignore_conflicts=True)
        created += len(rows)
    return created


def _insert_select(recipient_ids: QuerySet[Any], common: dict[str, Any]) -> int:
    select_sql, select_params = recipient_ids.query.sql_with_params()
    table = Notification._meta.db_table
    sql = f"""
        INSERT INTO {table}
            (id, recipient_id, cluster_id, event, event_key, priority, title, body, context, created_at, read_at)
        SELECT gen_random_uuid(), recipients.user_id, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, NULL
        FROM ({select_sql}) AS recipients (user_id)
        ON CONFLICT (recipient_id, event_key) DO NOTHING
    """  # noqa: S608 - the table name is ours; every value is a parameter
    params = [
        common["cluster_id"],
        common["event"],
        common["event_key"],
        common["priority"],
        common["title"],
        common["body"],
        json.dumps(common["context"], cls=DjangoJSONEncoder),
        common["created_at"],
        *select_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)
