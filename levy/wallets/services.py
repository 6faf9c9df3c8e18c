"""Wallet services: a resident's wallet, and the money the estate records as received
for a member. One transaction each, idempotent by key, audited; the ledger's
primitives are in ``levy.wallets.ledger``, bill payments in ``levy.billing.payments``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from levy.audit.services import audit_record
from levy.common.db import insert_row
from levy.common.errors import NotFoundError, RuleViolation, ValidationError
from levy.common.money import MAX_AMOUNT, parse_amount
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.estates.permissions import PaymentsPermissions
from levy.wallets.ledger import (
    ledger_entry,
    lock_wallet,
    move_balance,
    new_reference,
    replay,
    validate_idempotency_key,
    wallet_ensure,
)
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.rules import require_not_own_wallet

__all__ = [
    "ledger_deposit_on_locked_wallet",
    "member_wallet",
    "validate_idempotency_key",
    "wallet_credit",
    "wallet_ensure",
]


def member_wallet(*, access: EstateAccess) -> Wallet:
    """The caller's wallet in the estate, created (empty) on first use."""
    membership = access.require_member()
    wallet = Wallet.objects.filter(cluster=access.cluster, user_id=membership.user_id).first()
    if wallet is None:
        wallet = wallet_ensure(cluster=access.cluster, user=access.user)
    return wallet


def wallet_credit(
    *,
    access: EstateAccess,
    membership: Membership,
    amount: Any,
    note: str,
    idempotency_key: str,
    origin: Origin = Origin(),
) -> Transaction:
    """A treasurer records money the estate received for a member (cash, transfer)."""
    access.require(PaymentsPermissions.ManageWallet)
    key = validate_idempotency_key(idempotency_key)
    value = parse_amount(amount, currency=access.cluster.currency)
    note = (note or "").strip() if isinstance(note, str) or note is None else ""
    if len(note) > 2000:
        raise ValidationError(fields={"note": ["Use at most 2000 characters."]})
    if membership.cluster_id != access.cluster.pk:
        raise NotFoundError()
    require_not_own_wallet(access=access, member_user_id=membership.user_id, action="credit")
    if not membership.active:
        raise ValidationError(fields={"user_id": ["This person is no longer an active member of the estate."]})
    with transaction.atomic():
        wallet = lock_wallet(cluster=access.cluster, user=membership.user)
        replayed = replay(
            wallet, key, type=TransactionType.DEPOSIT, amount=value, bill_id=None, initiated_by=access.user.pk
        )
        if replayed is not None:
            return replayed
        balance = move_balance(wallet, value)
        if balance is None:
            raise ValidationError(
                fields={"amount": [f"This credit would take the wallet past the most it can hold ({MAX_AMOUNT})."]}
            )
        tx = ledger_entry(
            cluster=access.cluster,
            wallet=wallet,
            type=TransactionType.DEPOSIT,
            amount=value,
            balance_after=balance,
            payer_id=membership.user_id,
            initiated_by=access.user,
            idempotency_key=key,
            note=note,
        )
        audit_record(
            action="wallet.credit",
            target=tx,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"member_id": str(membership.user_id), "amount": f"{value:.2f}", "note": note},
        )
    return tx


def ledger_deposit_on_locked_wallet(
    *, wallet: Wallet, amount: Decimal, initiated_by_id: Any, idempotency_key: str, note: str
) -> Transaction:
    """Write a completed deposit into ``wallet`` (which the caller's transaction has
    locked with ``levy.wallets.ledger.lock_wallet``) and move its balance: money that reached the estate's
    account for the wallet's owner (a provider top-up). The ledger's (wallet,
    initiator, key) constraint makes a second entry for the same key impossible."""
    balance = move_balance(wallet, amount)
    if balance is None:
        raise RuleViolation("This would take the wallet past the most it can hold.", code="wallet_balance_limit")
    return insert_row(
        Transaction(
            cluster_id=wallet.cluster_id,
            wallet=wallet,
            type=TransactionType.DEPOSIT,
            status=TransactionStatus.COMPLETED,
            amount=amount,
            balance_after=balance,
            payer_id=wallet.user_id,
            initiated_by_id=initiated_by_id,
            reference=new_reference(),
            idempotency_key=idempotency_key,
            note=note,
        )
    )
