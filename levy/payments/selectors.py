"""Reads for payments: an estate's provider accounts and top-ups, always through an
:class:`~levy.estates.access.EstateAccess` (another estate's rows are "not found")."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from levy.common.errors import NotFoundError
from levy.estates.access import EstateAccess, parse_uuid
from levy.payments.models import PaymentAnomaly, ProviderAccount, TopUp


def provider_accounts(access: EstateAccess) -> list[ProviderAccount]:
    access.require_read_finances()
    return list(
        ProviderAccount.objects.filter(cluster_id=access.cluster.pk).select_related("updated_by").order_by("provider")
    )


def active_provider_account(cluster_id: uuid.UUID) -> ProviderAccount | None:
    return ProviderAccount.objects.filter(cluster_id=cluster_id, active=True).first()


def member_top_ups(access: EstateAccess) -> QuerySet[TopUp]:
    membership = access.require_member()
    return TopUp.objects.filter(cluster_id=access.cluster.pk, user_id=membership.user_id).order_by("-created_at", "-id")


def access_own_top_up(access: EstateAccess, top_up_id: object) -> TopUp:
    membership = access.require_member()
    top_up = TopUp.objects.filter(
        cluster_id=access.cluster.pk, user_id=membership.user_id, pk=parse_uuid(top_up_id)
    ).first()
    if top_up is None:
        raise NotFoundError()
    return top_up


def access_own_top_up_by_reference(access: EstateAccess, reference: object) -> TopUp:
    """The caller's own top-up in the estate by its provider reference (the one the
    provider appends when it sends the resident back); any other is ``NotFoundError``."""
    membership = access.require_member()
    top_up = TopUp.objects.filter(
        cluster_id=access.cluster.pk, user_id=membership.user_id, reference=str(reference or "")[:40]
    ).first()
    if top_up is None:
        raise NotFoundError()
    return top_up


def cluster_top_ups(access: EstateAccess, *, status: str | None = None) -> QuerySet[TopUp]:
    access.require_read_finances()
    top_ups = TopUp.objects.filter(cluster_id=access.cluster.pk).select_related("user")
    if status:
        top_ups = top_ups.filter(status=status)
    return top_ups.order_by("-created_at", "-id")


def cluster_payment_anomalies(access: EstateAccess) -> QuerySet[PaymentAnomaly]:
    access.require_read_finances()
    return PaymentAnomaly.objects.filter(cluster_id=access.cluster.pk).order_by("-created_at", "-id")
