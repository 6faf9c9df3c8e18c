"""The estate's provider accounts: the keys a top-up is charged and verified with.

Only the estate's admin sets them (``ManageProviders``); secrets are sealed before
they are stored (``levy.payments.secrets``) and only their hints are ever shown or
audited. One account per provider, at most one of them active.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from levy.audit.services import audit_record
from levy.common.errors import NotFoundError, ValidationError
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.models import Cluster
from levy.estates.permissions import EstatePermissions
from levy.payments import secrets
from levy.payments.models import Provider, ProviderAccount

MAX_SECRET_LENGTH = 200


def _clean_secret(value: Any, field: str, errors: dict[str, list[str]]) -> str | None:
    """None when the field was not sent (keep what is stored); else the cleaned value."""
    if value is None:
        return None
    if not isinstance(value, str):
        errors[field] = ["Enter text."]
        return None
    value = value.strip()
    if not value:
        errors[field] = ["This field may not be blank."]
    elif len(value) > MAX_SECRET_LENGTH or not value.isprintable() or any(c.isspace() for c in value):
        errors[field] = [f"Use at most {MAX_SECRET_LENGTH} characters, without spaces."]
    return value


def provider_account_save(
    *,
    access: EstateAccess,
    provider: str,
    secret_key: str | None = None,
    public_key: str | None = None,
    webhook_secret: str | None = None,
    active: bool | None = None,
    origin: Origin = Origin(),
) -> ProviderAccount:
    """Create or change the estate's account with ``provider``. Secrets are sealed
    before they are stored and the audit record names which fields changed, with the
    secrets' hints only. Making an account active makes the other one inactive."""
    access.require(EstatePermissions.ManageProviders)
    if provider not in Provider.values:
        raise NotFoundError()
    errors: dict[str, list[str]] = {}
    secret = _clean_secret(secret_key, "secret_key", errors)
    hook = _clean_secret(webhook_secret, "webhook_secret", errors)
    public = _clean_secret(public_key, "public_key", errors) if public_key not in (None, "") else public_key
    if active is not None and not isinstance(active, bool):
        errors["active"] = ["Must be true or false."]
    if errors:
        raise ValidationError(fields=errors)
    now = timezone.now()
    with transaction.atomic():
        # Serialises changes to the estate's accounts (and the one-active rule).
        Cluster.objects.select_for_update().filter(pk=access.cluster.pk).exists()
        account = ProviderAccount.objects.filter(cluster_id=access.cluster.pk, provider=provider).first()
        created = account is None
        if account is None:
            missing = {"secret_key": secret is None}
            if provider == Provider.FLUTTERWAVE:
                missing["webhook_secret"] = hook is None
            required = {f: ["This field is required."] for f, absent in missing.items() if absent}
            if required:
                raise ValidationError(fields=required)
            account = ProviderAccount(cluster=access.cluster, provider=provider, updated_by=access.user)
        changed: list[str] = []
        if secret is not None:
            account.secret_key_sealed, account.secret_key_hint = secrets.seal(secret), secrets.hint(secret)
            changed.append("secret_key")
        if hook is not None:
            account.webhook_secret_sealed, account.webhook_secret_hint = secrets.seal(hook), secrets.hint(hook)
            changed.append("webhook_secret")
        if public is not None and public != account.public_key:
            account.public_key = public
            changed.append("public_key")
        if active is not None and active != account.active:
            if active:
                ProviderAccount.objects.filter(cluster_id=access.cluster.pk, active=True).exclude(
                    provider=provider
                ).update(active=False, updated_at=now, updated_by=access.user)
            account.active = active
            changed.append("active")
        if not changed and not created:
            return account
        account.updated_at, account.updated_by = now, access.user
        account.save()
        audit_record(
            action="payments.provider_account.create" if created else "payments.provider_account.update",
            target=account,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={
                "provider": provider,
                "changed": changed,
                "active": account.active,
                "secret_key_hint": account.secret_key_hint,
                "webhook_secret_hint": account.webhook_secret_hint,
            },
        )
    return account


def webhook_url(account: ProviderAccount) -> str:
    """The URL to enter in the provider's dashboard for this account's webhooks."""
    path = reverse("payments-webhook", kwargs={"account_id": account.pk})
    return settings.LEVY_PUBLIC_URL.rstrip("/") + path
