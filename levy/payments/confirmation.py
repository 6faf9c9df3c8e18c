"""Confirming a top-up: the provider's verify answer, and crediting the wallet once.

Money reaches a wallet only from the provider's own verify answer, and exactly once:

- the provider is called (verify) outside any database transaction;
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
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from levy.audit.services import audit_record
from levy.billing.payments import bill_pay
from levy.common.db import refresh_for_share
from levy.common.errors import ApplicationError
from levy.common.origin import Origin
from levy.estates.access import access_cluster
from levy.estates.permissions import PaymentsPermissions
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify
from levy.payments.models import AnomalyKind, PaymentAnomaly, TopUp, TopUpStatus
from levy.payments.providers.base import Verification, VerifiedStatus, WebhookEvent
from levy.payments.providers.registry import adapter_for
from levy.wallets.ledger import lock_wallet
from levy.wallets.services import ledger_deposit_on_locked_wallet

if TYPE_CHECKING:
    from levy.billing.models import Bill

logger = logging.getLogger("levy.payments")

OPEN_STATUSES = (TopUpStatus.PENDING, TopUpStatus.EXPIRED)


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
    problem = mismatch(top_up, verification.reference, verification.amount, verification.currency)
    if problem is not None:
        return flag_mismatch(top_up, problem, source=source, reported=verification)
    return _credit(top_up, verification, source=source)


def mismatch(top_up: TopUp, reference: str, amount: Decimal | None, currency: str) -> AnomalyKind | None:
    if reference and reference != top_up.reference:
        return AnomalyKind.UNKNOWN_REFERENCE
    if currency != top_up.currency:
        return AnomalyKind.CURRENCY_MISMATCH
    if amount is None or amount != top_up.amount:
        return AnomalyKind.AMOUNT_MISMATCH
    return None


def flag_mismatch(top_up: TopUp, kind: AnomalyKind, *, source: str, reported: Verification | WebhookEvent) -> TopUp:
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
