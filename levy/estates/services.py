"""Writes for estates themselves. A member's life in an estate (added, changed, leaving,
imported) moves them in and out of bills' audiences: those services are in
``levy.members``, which sits above billing, wallets and notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from levy.audit.services import audit_record
from levy.common.errors import PermissionDeniedError, ValidationError
from levy.common.origin import Origin
from levy.estates.models import Cluster

if TYPE_CHECKING:
    from levy.accounts.models import User


def cluster_create(*, operator: User, name: str, currency: str = "", origin: Origin = Origin()) -> Cluster:
    """The platform operator creates an estate."""
    if not operator.is_superuser:
        raise PermissionDeniedError()
    fields: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        fields["name"] = ["This field is required."]
    elif len(name) > 200:
        fields["name"] = ["Use at most 200 characters."]
    currency = (currency or "").strip().upper() or Cluster._meta.get_field("currency").get_default()
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        fields["currency"] = ["Use a three-letter ISO 4217 code, e.g. NGN."]
    if fields:
        raise ValidationError(fields=fields)
    with transaction.atomic():
        cluster = Cluster.objects.create(name=name, currency=currency)
        audit_record(
            action="cluster.create",
            target=cluster,
            actor=operator,
            cluster=cluster,
            origin=origin,
            data={"name": name, "currency": currency},
        )
    return cluster
