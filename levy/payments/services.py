"""Writes for payments: starting a top-up (or paying a bill by card), and the three
ways its confirmation arrives — the resident's return from checkout, the provider's
webhook, the sweep. All three end in ``levy.payments.confirmation.topup_confirm``,
which credits once; the provider accounts are ``levy.payments.accounts``.

The provider is called (initialize, verify) outside any database transaction.
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
from levy.common.errors import (
    ApplicationError,
    IdempotencyKeyReusedError,
    NotFoundError,
    RuleViolation,
    ValidationError,
)
from levy.common.money import parse_amount
from levy.common.origin import Origin
from levy.estates.access import EstateAccess, parse_uuid
from levy.payments import secrets
from levy.payments.confirmation import OPEN_STATUSES, flag_mismatch, mismatch, topup_confirm
from levy.payments.models import AnomalyKind, PaymentAnomaly, ProviderAccount, TopUp, TopUpStatus
from levy.payments.providers.base import MalformedWebhook, ProviderError
from levy.payments.providers.registry import adapter_for
from levy.payments.selectors import active_provider_account
from levy.wallets.ledger import validate_idempotency_key
from levy.wallets.models import Wallet

if TYPE_CHECKING:
    from levy.billing.models import Bill

logger = logging.getLogger("levy.payments")


# --- starting a top-up --------------------------------------------------------------------------


def return_url() -> str:
    """Where the provider sends the resident back after checkout."""
    return settings.LEVY_TOPUP_RETURN_URL or settings.LEVY_PUBLIC_URL.rstrip("/") + reverse("payments-return")


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
    problem = mismatch(top_up, event.reference, event.amount, event.currency)
    if problem is not None:
        flag_mismatch(top_up, problem, source="webhook", reported=event)
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
