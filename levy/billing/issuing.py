"""Issuing a bill: the one path every new bill takes, a manager's or a schedule's.

``bill_issue`` numbers the bill from its estate's sequence, inserts it, opens its
counters, audits it and records its ``PAYMENT_DUE``, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from levy.audit.services import audit_record
from levy.billing.counters import counters_open
from levy.billing.models import Bill
from levy.billing.selectors import BillStats
from levy.common.db import insert_row
from levy.common.errors import ValidationError
from levy.common.origin import Origin
from levy.estates.models import Cluster, Membership
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify


def require_billable_member(cluster: Cluster, user_id: Any) -> Membership:
    """The active resident membership a user-specific bill may target, or
    ``ValidationError`` on ``user_id``."""
    membership = (
        Membership.objects.select_related("user")
        .filter(cluster=cluster, user_id=user_id, active=True, is_resident=True)
        .first()
    )
    if membership is None:
        raise ValidationError(fields={"user_id": ["Choose an active resident member of this estate."]})
    return membership


def take_bill_number(cluster: Cluster) -> tuple[int, int]:
    """Bump the estate's bill sequence; returns (number, billable members). The UPDATE
    holds the estate row until the transaction ends, so no membership change (they lock
    it too) interleaves with the bill's issue: the billable count read here is the
    audience of a bill issued from now on."""
    qn = connection.ops.quote_name
    table, key = qn(Cluster._meta.db_table), qn("id")
    # Identifiers come from the model; the key is a parameter.
    statement = (
        f"UPDATE {table} SET {qn('bill_sequence')} = {qn('bill_sequence')} + 1 WHERE {key} = %s "  # noqa: S608
        f"RETURNING {qn('bill_sequence')}, {qn('billable_members')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [Cluster._meta.get_field("id").get_db_prep_value(cluster.pk, connection)])
        number, billable = cursor.fetchone()
    return int(number), int(billable)


def bill_issue(
    *,
    cluster: Cluster,
    created_by_id: Any,
    actor: Any,
    values: dict[str, Any],
    user_id: Any,
    origin: Origin = Origin(),
    extra: dict[str, Any] | None = None,
) -> Bill:
    """Issue one bill from validated ``values``: number it, open its counters, audit it
    and record its ``PAYMENT_DUE``. Call it inside a transaction, after the caller's
    checks (a manager's permission, or a schedule's). ``extra`` holds further Bill
    fields (a schedule and its period); ``actor`` is None when the system issues it."""
    if user_id is not None:
        require_billable_member(cluster, user_id)
    number, billable = take_bill_number(cluster)
    issued_at = timezone.now()
    bill = insert_row(
        Bill(
            cluster=cluster,
            reference=f"BILL-{timezone.localtime(issued_at).year}-{number:06d}",
            user_id=user_id,
            created_by_id=created_by_id,
            created_at=issued_at,
            **values,
            **(extra or {}),
        )
    )
    bill.cluster = cluster
    BillStats.attach_opening(bill, eligible=counters_open(bill, billable_members=billable))
    audit_record(
        action="bill.create",
        target=bill,
        actor=actor,
        cluster=cluster,
        origin=origin,
        data={
            **values,
            "user_id": str(user_id) if user_id else None,
            "reference": bill.reference,
            **{name: str(value) for name, value in (extra or {}).items()},
        },
    )
    notify(
        event=NotificationEvents.PAYMENT_DUE,
        cluster=cluster,
        recipients=Recipients.bill_audience(bill),
        context=bill_context(bill),
        event_key=f"PAYMENT_DUE:bill:{bill.pk}",
    )
    return bill
