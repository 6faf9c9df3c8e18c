"""Writes for payments: provider accounts, top-ups, their confirmation and expiry.

Money reaches a wallet only from the provider's own verify answer, and exactly once:

- the provider is called (initialize, verify) outside any database transaction;
- crediting is one transaction that locks the member's wallet, re-reads the top-up
  row FOR UPDATE, and moves it from ``pending``/``expired`` to ``credited`` together
  with the ledger entry; a second confirmer (return page, webhook, sweep — in any
  order, any number of times, concurrently) finds it credited and does nothing;
- the ledger entry's idempotency key ``topup:<reference>`` is unique per wallet, a
  database backstop under the code's own check.

Lock order, as everywhere in Levy: bill (FOR SHARE, pay by card only), then wallet,
then the top-up row.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from levy.audit.services import audit_record
from levy.billing import rules
from levy.billing.payments import bill_pay
from levy.common.db import refresh_for_share
from levy.common.errors import (
    ApplicationError,
    IdempotencyKeyReusedError,
    NotFoundError,
    RuleViolation,
    ValidationError,
)
from levy.common.money import parse_amount
from levy.common.origin import Origin
from levy.estates.access import EstateAccess, access_cluster, parse_uuid
from levy.estates.models import Cluster
from levy.estates.permissions import EstatePermissions, PaymentsPermissions
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify
from levy.payments import secrets
from levy.payments.models import AnomalyKind, PaymentAnomaly, Provider, ProviderAccount, TopUp, TopUpStatus
from levy.payments.providers.base import (
    MalformedWebhook,
    ProviderError,
    Verification,
    VerifiedStatus,
    WebhookEvent,
)
from levy.payments.providers.registry import adapter_for
from levy.payments.selectors import active_provider_account
from levy.wallets.ledger import lock_wallet, validate_idempotency_key
from levy.wallets.models import Wallet
from levy.wallets.services import ledger_deposit_on_locked_wallet

if TYPE_CHECKING:
    from levy.billing.models import Bill

logger = logging.getLogger("levy.payments")

MAX_SECRET_LENGTH = 200
OPEN_STATUSES = (TopUpStatus.PENDING, TopUpStatus.EXPIRED)


# --- provider accounts --------------------------------------------------------------------------


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


def return_url() -> str:
    """Where the provider sends the resident back after checkout."""
    return settings.LEVY_TOPUP_RETURN_URL or settings.LEVY_PUBLIC_URL.rstrip("/") + reverse("payments-return")


# --- starting a top-up --------------------------------------------------------------------------


def _new_reference() -> str:
    # Letters and digits only: both providers accept it as a reference as it is.
    return "LVY" + pysecrets.token_hex(10).upper()


def topup_start(
    *,
    access: EstateAccess,
    amount: Any,
    idempotency_key: str,
    bill: Bill | None = None,
    origin: Origin = Origin(),
    callback_url: str | None = None,
) -> TopUp:
    """Start a top-up of ``amount`` into the caller's wallet: a pending record with a
    unique reference (committed first), then the provider's initialize call outside
    any transaction, which gives the checkout URL. The same key returns the same top-up.
    The provider sends the resident back to ``callback_url`` (the web wallet's return
    page), else to the API's return endpoint; either verifies through ``topup_return``.

    The provider failing or timing out marks the top-up failed and raises
    ``ProviderError`` (503): nothing was charged, the resident may start again."""
    membership = access.require_member()
    key = validate_idempotency_key(idempotency_key)
    value = parse_amount(amount)
    existing = TopUp.objects.filter(
        cluster_id=access.cluster.pk, user_id=membership.user_id, idempotency_key=key
    ).first()
    if existing is not None:
        return _replayed(existing, value, bill)
    account = active_provider_account(access.cluster.pk)
    if account is None:
        raise RuleViolation(
            "This estate does not take payments by card yet: ask the estate's admin to set up a payment provider.",
            code="provider_not_configured",
        )
    now = timezone.now()
    top_up = TopUp(
        cluster=access.cluster,
        user=access.user,
        account=account,
        provider=account.provider,
        reference=_new_reference(),
        amount=value,
        currency=access.cluster.currency,
        idempotency_key=key,
        bill=bill,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.LEVY_TOPUP_EXPIRE_MINUTES),
    )
    try:
        with transaction.atomic():
            top_up.save(force_insert=True)
            audit_record(
                action="payments.top_up.start",
                target=top_up,
                actor=access.user,
                cluster=access.cluster,
                origin=origin,
                data={
                    "reference": top_up.reference,
                    "amount": f"{value:.2f}",
                    "provider": account.provider,
                    "bill_id": str(bill.pk) if bill is not None else None,
                },
            )
    except IntegrityError:
        # A concurrent request with the same key won the insert.
        existing = TopUp.objects.get(cluster_id=access.cluster.pk, user_id=membership.user_id, idempotency_key=key)
        return _replayed(existing, value, bill)
    try:
        checkout = adapter_for(account).initialize(
            reference=top_up.reference,
            amount=value,
            currency=top_up.currency,
            email=access.user.email,
            callback_url=callback_url or return_url(),
        )
    except ProviderError as exc:
        reason = exc.details.get("provider_message") or exc.details.get("problem") or exc.code
        TopUp.objects.filter(pk=top_up.pk, status=TopUpStatus.PENDING).update(
            status=TopUpStatus.FAILED, failure_reason=f"{exc.code}: {reason}"[:200]
        )
        raise
    TopUp.objects.filter(pk=top_up.pk).update(checkout_url=checkout.url)
    top_up.checkout_url = checkout.url
    return top_up


def _replayed(existing: TopUp, amount: Decimal, bill: Bill | None) -> TopUp:
    if existing.amount != amount or existing.bill_id != (bill.pk if bill is not None else None):
        raise IdempotencyKeyReusedError()
    return existing


def bill_pay_by_card_start(
    *,
    access: EstateAccess,
    bill: Bill,
    idempotency_key: str,
    origin: Origin = Origin(),
    callback_url: str | None = None,
) -> TopUp:
    """Pay ``bill`` by card: a top-up of exactly the shortfall (the bill's amount less
    the wallet's balance, computed here, never taken from the browser). Once the
    top-up is verified, the crediting transaction pays the bill from the wallet.
    Refused up front when a rule already refuses the payment, or when the wallet
    covers the bill (pay from the wallet instead)."""
    membership = access.require_member()
    key = validate_idempotency_key(idempotency_key)
    existing = TopUp.objects.filter(
        cluster_id=access.cluster.pk, user_id=membership.user_id, idempotency_key=key
    ).first()
    if existing is not None:
        if existing.bill_id != bill.pk:
            raise IdempotencyKeyReusedError()
        return existing
    refusal = rules.payment_refusal(bill, rules.read_member_facts(bill=bill, user=access.user))
    if refusal is not None:
        raise refusal
    balance = Wallet.objects.filter(cluster_id=access.cluster.pk, user_id=membership.user_id).values_list(
        "balance", flat=True
    ).first() or Decimal("0.00")
    shortfall = bill.amount - balance
    if shortfall <= 0:
        raise RuleViolation("Your wallet covers this bill: pay it from your wallet.", code="wallet_covers_bill")
    return topup_start(
        access=access, amount=shortfall, idempotency_key=key, bill=bill, origin=origin, callback_url=callback_url
    )


# --- confirming a top-up ------------------------------------------------------------------------


def topup_confirm(*, top_up: TopUp, source: str) -> TopUp:
    """Ask the provider about ``top_up`` and act on its answer: credit it (once), flag a
    mismatch, or leave it pending. ``source`` (return, webhook, sweep) is recorded.
    Raises ``ProviderError`` when the provider cannot be asked."""
    if top_up.status not in OPEN_STATUSES:
        return top_up
    account = top_up.account
    verification = adapter_for(account).verify(
        reference=top_up.reference, provider_transaction_id=top_up.provider_transaction_id
    )
    return apply_verification(top_up=top_up, verification=verification, source=source)


def apply_verification(*, top_up: TopUp, verification: Verification, source: str) -> TopUp:
    now = timezone.now()
    if verification.status != VerifiedStatus.SUCCESS:
        TopUp.objects.filter(pk=top_up.pk).update(last_checked_at=now)
        top_up.last_checked_at = now
        return top_up
    problem = _mismatch(top_up, verification.reference, verification.amount, verification.currency)
    if problem is not None:
        return _flag_mismatch(top_up, problem, source=source, reported=verification)
    return _credit(top_up, verification, source=source)


def _mismatch(top_up: TopUp, reference: str, amount: Decimal | None, currency: str) -> AnomalyKind | None:
    if reference and reference != top_up.reference:
        return AnomalyKind.UNKNOWN_REFERENCE
    if currency != top_up.currency:
        return AnomalyKind.CURRENCY_MISMATCH
    if amount is None or amount != top_up.amount:
        return AnomalyKind.AMOUNT_MISMATCH
    return None


def _flag_mismatch(top_up: TopUp, kind: AnomalyKind, *, source: str, reported: Verification | WebhookEvent) -> TopUp:
    reported_amount = f"{reported.amount}" if reported.amount is not None else "unknown"
    with transaction.atomic():
        moved = TopUp.objects.filter(pk=top_up.pk, status__in=OPEN_STATUSES).update(
            status=TopUpStatus.MISMATCH, failure_reason=kind.value, last_checked_at=timezone.now()
        )
        if not moved:
            top_up.refresh_from_db()
            return top_up
        anomaly = PaymentAnomaly.objects.create(
            cluster_id=top_up.cluster_id,
            account_id=top_up.account_id,
            top_up=top_up,
            kind=kind,
            source=source,
            reference=top_up.reference,
            details={
                "expected_amount": f"{top_up.amount:.2f}",
                "expected_currency": top_up.currency,
                "reported_amount": reported_amount,
                "reported_currency": reported.currency,
                "reported_reference": reported.reference,
                "provider_transaction_id": reported.provider_transaction_id,
            },
        )
        audit_record(
            action="payments.top_up.mismatch",
            target=top_up,
            actor=None,
            cluster=top_up.cluster,
            origin=Origin(),
            data={"kind": kind.value, "source": source, "anomaly_id": str(anomaly.pk), **anomaly.details},
        )
        notify(
            event=NotificationEvents.TOP_UP_MISMATCH,
            cluster=top_up.cluster,
            recipients=Recipients.permission_holders(PaymentsPermissions.ManageWallet),
            context={
                "cluster_id": str(top_up.cluster_id),
                "top_up_id": str(top_up.pk),
                "top_up_reference": top_up.reference,
                "provider": top_up.get_provider_display(),
                "member_name": top_up.user.name or top_up.user.email,
                "amount": f"{top_up.amount:.2f}",
                "currency": top_up.currency,
                "reported_amount": reported_amount,
                "reported_currency": reported.currency or "?",
                "kind": kind.value,
            },
            event_key=f"TOP_UP_MISMATCH:top_up:{top_up.pk}",
        )
    logger.warning("top-up mismatch", extra={"reference": top_up.reference, "kind": kind.value, "source": source})
    top_up.refresh_from_db()
    return top_up


def _credit(top_up: TopUp, verification: Verification, *, source: str) -> TopUp:
    with transaction.atomic():
        bill = top_up.bill
        if bill is not None:
            refresh_for_share(bill)
        wallet = lock_wallet(cluster=top_up.cluster, user=top_up.user)
        locked = TopUp.objects.select_related("cluster", "user").select_for_update(of=("self",)).get(pk=top_up.pk)
        if locked.status not in OPEN_STATUSES:
            return locked
        entry = ledger_deposit_on_locked_wallet(
            wallet=wallet,
            amount=locked.amount,
            initiated_by_id=locked.user_id,
            idempotency_key=f"topup:{locked.reference}",
            note=f"{locked.get_provider_display()} top-up {locked.reference}",
        )
        now = timezone.now()
        locked.status, locked.transaction, locked.verified_at, locked.last_checked_at = (
            TopUpStatus.CREDITED,
            entry,
            now,
            now,
        )
        locked.provider_transaction_id = verification.provider_transaction_id[:64] or locked.provider_transaction_id
        locked.save(
            update_fields=["status", "transaction", "verified_at", "last_checked_at", "provider_transaction_id"]
        )
        audit_record(
            action="payments.top_up.credit",
            target=locked,
            actor=None,
            cluster=locked.cluster,
            origin=Origin(),
            data={
                "reference": locked.reference,
                "amount": f"{locked.amount:.2f}",
                "transaction_id": str(entry.pk),
                "source": source,
                "provider_transaction_id": locked.provider_transaction_id,
            },
        )
        notify(
            event=NotificationEvents.TOP_UP_CREDITED,
            cluster=locked.cluster,
            recipients=Recipients.users(locked.user_id),
            context={
                "cluster_id": str(locked.cluster_id),
                "top_up_id": str(locked.pk),
                "top_up_reference": locked.reference,
                "provider": locked.get_provider_display(),
                "amount": f"{locked.amount:.2f}",
                "currency": locked.currency,
                "transaction_id": str(entry.pk),
                "wallet_balance": f"{entry.balance_after:.2f}",
            },
            event_key=f"TOP_UP_CREDITED:top_up:{locked.pk}",
        )
        if bill is not None:
            _pay_bill_by_card(locked, bill)
    locked.credited_now = True  # this call wrote the entry (a concurrent confirmer did not)
    return locked


def _pay_bill_by_card(top_up: TopUp, bill: Bill) -> None:
    """Pay the bill the top-up was for, in the crediting transaction (a savepoint). If a
    rule refuses it now (cancelled, disputed, past due, paid meanwhile), the money stays
    in the wallet and the resident is told why."""
    try:
        with transaction.atomic():
            access = access_cluster(top_up.user, top_up.cluster_id)
            payment = bill_pay(access=access, bill=bill, idempotency_key=f"card:{top_up.reference}")
        top_up.bill_payment, top_up.bill_outcome = payment, "paid"
    except ApplicationError as exc:
        top_up.bill_outcome = exc.code
        bill.cluster = top_up.cluster
        notify(
            event=NotificationEvents.PAYMENT_FAILED,
            cluster=top_up.cluster,
            recipients=Recipients.users(top_up.user_id),
            context={
                **bill_context(bill),
                "failure_reason": exc.code,
                "failure_message": (
                    f"{exc.message} The {top_up.currency} {top_up.amount:.2f} you paid by card "
                    f"(reference {top_up.reference}) is in your wallet."
                ),
            },
            event_key=f"PAYMENT_FAILED:top_up:{top_up.pk}",
        )
    top_up.save(update_fields=["bill_payment", "bill_outcome"])


# --- the three ways a confirmation arrives ---------------------------------------------------


def topup_return(*, reference: object) -> TopUp:
    """The resident is back from the provider's checkout: verify now. The provider
    being unreachable is not the resident's problem: the top-up stays pending and the
    webhook or the sweep finishes it."""
    top_up = TopUp.objects.select_related("account", "cluster", "user").filter(reference=str(reference)[:40]).first()
    if top_up is None:
        raise NotFoundError()
    try:
        return topup_confirm(top_up=top_up, source="return")
    except ProviderError:
        logger.warning("provider unreachable on return", extra={"reference": top_up.reference})
        return top_up


class WebhookRejected(ApplicationError):
    """The webhook's signature is missing or wrong (HTTP 401): nothing was read from it."""

    code = "invalid_signature"
    default_message = "The webhook signature is missing or invalid."


@dataclass(frozen=True)
class WebhookOutcome:
    result: str  # credited | already_done | ignored | mismatch | unknown_reference
    reference: str = ""


def webhook_receive(*, account_id: object, body: bytes, headers: Any) -> WebhookOutcome:
    """A provider's webhook for one estate account, verified on the raw bytes.

    Returns the outcome (answered 200); raises ``WebhookRejected`` (401) on a bad
    signature, ``ValidationError`` (400) on a body that is not the provider's webhook,
    ``ProviderError`` (503) when the provider cannot confirm the payment now — a non-2xx
    answer makes the provider send it again later."""
    account = ProviderAccount.objects.select_related("cluster").filter(pk=parse_uuid(account_id)).first()
    if account is None:
        raise NotFoundError()
    adapter = adapter_for(account)
    if not adapter.signature_valid(body=body, headers=headers):
        logger.warning("webhook with a bad signature", extra={"account_id": str(account.pk)})
        raise WebhookRejected()
    try:
        event = adapter.parse_webhook(body)
    except MalformedWebhook as exc:
        raise ValidationError(f"Not a {account.get_provider_display()} webhook: {exc}.") from None
    if not event.is_charge_success:
        return WebhookOutcome("ignored", event.reference)
    top_up = (
        TopUp.objects.select_related("account", "cluster", "user")
        .filter(account=account, reference=event.reference[:40])
        .first()
    )
    if top_up is None or top_up.reference != event.reference:
        PaymentAnomaly.objects.create(
            cluster_id=account.cluster_id,
            account=account,
            kind=AnomalyKind.UNKNOWN_REFERENCE,
            source="webhook",
            reference=event.reference[:200],
            details={
                "reported_amount": f"{event.amount}" if event.amount is not None else "unknown",
                "reported_currency": event.currency[:3],
                "provider_transaction_id": event.provider_transaction_id[:64],
            },
        )
        logger.warning("webhook for an unknown reference", extra={"account_id": str(account.pk)})
        return WebhookOutcome("unknown_reference", event.reference[:40])
    if top_up.status not in OPEN_STATUSES:
        return WebhookOutcome(
            "already_done" if top_up.status == TopUpStatus.CREDITED else top_up.status, top_up.reference
        )
    problem = _mismatch(top_up, event.reference, event.amount, event.currency)
    if problem is not None:
        _flag_mismatch(top_up, problem, source="webhook", reported=event)
        return WebhookOutcome("mismatch", top_up.reference)
    if event.provider_transaction_id and not top_up.provider_transaction_id:
        top_up.provider_transaction_id = event.provider_transaction_id[:64]
    confirmed = topup_confirm(top_up=top_up, source="webhook")
    if confirmed.status == TopUpStatus.CREDITED:
        done = "credited" if confirmed.credited_now else "already_done"
        return WebhookOutcome(done, confirmed.reference)
    if confirmed.status == TopUpStatus.MISMATCH:
        return WebhookOutcome("mismatch", confirmed.reference)
    # The webhook says paid, the provider's verify does not (yet): ask to be sent again.
    raise ProviderError(
        "The provider has not confirmed this payment yet.",
        code="payment_not_confirmed",
        details={"reference": top_up.reference},
    )


# --- the sweep ----------------------------------------------------------------------------------


def topups_sweep(*, now: Any = None, batch_size: int = 100) -> dict[str, int]:
    """Verify pending top-ups that nobody confirmed (oldest check first) and expire
    those past ``expires_at`` that the provider does not report paid. An expired top-up
    that is paid after all is still credited when its webhook or return arrives."""
    now = now or timezone.now()
    min_age = timedelta(seconds=settings.LEVY_TOPUP_SWEEP_MIN_AGE_SECONDS)
    candidates = list(
        TopUp.objects.select_related("account", "cluster", "user")
        .filter(status=TopUpStatus.PENDING, created_at__lte=now - min_age)
        .order_by("last_checked_at", "created_at")[:batch_size]
    )
    counts = {"checked": 0, "credited": 0, "mismatch": 0, "expired": 0, "unreachable": 0}
    for top_up in candidates:
        try:
            result = topup_confirm(top_up=top_up, source="sweep")
        except ProviderError:
            counts["unreachable"] += 1
            result = top_up
        except secrets.SecretUnreadableError:
            logger.error("cannot read the provider secret of a top-up", extra={"reference": top_up.reference})
            counts["unreachable"] += 1
            result = top_up
        counts["checked"] += 1
        if result.status == TopUpStatus.CREDITED:
            counts["credited"] += 1
        elif result.status == TopUpStatus.MISMATCH:
            counts["mismatch"] += 1
        elif result.expires_at <= now:
            counts["expired"] += TopUp.objects.filter(pk=top_up.pk, status=TopUpStatus.PENDING).update(
                status=TopUpStatus.EXPIRED
            )
    return counts
