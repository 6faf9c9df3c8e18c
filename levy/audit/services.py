from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

from levy.audit.models import AuditEvent
from levy.common.db import insert_row
from levy.common.origin import Origin

if TYPE_CHECKING:
    from levy.accounts.models import User
    from levy.estates.models import Cluster


def audit_record(
    *,
    action: str,
    target: models.Model,
    actor: User | None,
    cluster: Cluster | None,
    origin: Origin,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one audit event. Call it inside the transaction that makes the change,
    so the change and its record commit or roll back together."""
    event = AuditEvent(
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        actor=actor,
        cluster=cluster,
        data=data or {},
        ip_address=origin.ip,
        user_agent=origin.user_agent[:1000],
    )
    return insert_row(event)
