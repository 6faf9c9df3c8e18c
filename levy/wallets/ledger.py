"""The ledger's primitives: what every money movement is made of.

A service that moves money (``levy.wallets.services.wallet_credit``, the payments of
``levy.billing.payments``) validates its idempotency key, locks the wallet
(``lock_wallet``, the last lock of the order in ``levy.billing.locks``), returns the
entry its key already produced (``replay``), moves the balance by one guarded UPDATE
(``move_balance``) and writes one entry (``ledger_entry``) — in one transaction.

Concurrency rules (see docs/decisions/0003-ledger-and-locking.md):
- the member's wallet row, locked FOR UPDATE, serialises everything that moves or
  decides about that member's money (pay, dispute, credit, refund);
- the balance moves only by a conditional UPDATE (``balance >= amount``) and a CHECK
  constraint keeps it at or above zero;
- a unique constraint allows one completed payment per (bill, member, settlement), and
  a trigger a payment after the first only once the one before it was refunded while
  the bill was live: one live payment per bill per member (decision 0028); another
  allows one ledger entry per (wallet, initiator, idempotency key).
"""

from __future__ import annotations

import functools
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import F

from levy.common.db import column, db_value, fetch_one, insert_row, select_one, table
from levy.common.errors import IdempotencyKeyReusedError, InsufficientFundsError, ValidationError
from levy.common.money import MAX_AMOUNT
from levy.estates.models import Cluster
from levy.wallets.models import Transaction, TransactionStatus, Wallet

if TYPE_CHECKING:
    from levy.accounts.models import User

MAX_KEY_LENGTH = 128


def new_reference() -> str:
    return f"TX-{uuid.uuid4().hex[:16].upper()}"


def validate_idempotency_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValidationError(
            "An idempotency key is required for every money movement.",
            fields={"idempotency_key": ["This field is required."]},
        )
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(fields={"idempotency_key": [f"Use at most {MAX_KEY_LENGTH} printable characters."]})
    return key


def wallet_ensure(*, cluster: Cluster, user: User) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(cluster=cluster, user=user)
    return wallet


def lock_wallet(*, cluster: Cluster, user: User) -> Wallet:
    """Lock (creating if needed) the member's wallet FOR UPDATE until the transaction ends."""
    wallet = select_one(Wallet, "FOR UPDATE", cluster=cluster.pk, user=user.pk)
    if wallet is None:
        wallet_ensure(cluster=cluster, user=user)
        wallet = Wallet.objects.select_for_update().get(cluster=cluster, user=user)
    return wallet


@functools.cache
def _move_balance_sql(vendor: str, debit: bool) -> str:
    """Add ``delta`` to one wallet's balance unless the bound refuses it (a debit: the
    balance must be at least what it takes; a credit: at most what leaves room for it)
    and return the new balance, in one statement: what :func:`_move_balance_orm` (its
    reference) does in two."""
    balance = column(Wallet, "balance")
    bound = ">=" if debit else "<="
    return (
        f"UPDATE {table(Wallet)} SET {balance} = {balance} + %s "  # noqa: S608 - identifiers from the model, values are parameters
        f"WHERE {column(Wallet, 'id')} = %s AND {balance} {bound} %s RETURNING {balance}"
    )


def _balance_limit(delta: Decimal) -> Decimal:
    """The bound the balance is held to before ``delta`` moves it: no lower than zero
    after a debit, no higher than the most a balance can hold after a credit."""
    return -delta if delta < 0 else MAX_AMOUNT - delta


def move_balance(wallet: Wallet, delta: Decimal) -> Decimal | None:
    """Apply ``delta`` to the balance unless it would go below zero or above the most a
    balance can hold; return the new balance, or None when refused."""
    params = [delta, db_value(Wallet, "id", wallet.pk), _balance_limit(delta)]
    row = fetch_one(_move_balance_sql(connection.vendor, delta < 0), params)
    return None if row is None else Wallet._meta.get_field("balance").to_python(row[0])


def _move_balance_orm(wallet: Wallet, delta: Decimal) -> Decimal | None:
    """:func:`move_balance` through the ORM (a guarded ``F()`` update, then a read): its
    reference."""
    bound = {"balance__gte" if delta < 0 else "balance__lte": _balance_limit(delta)}
    if not Wallet.objects.filter(pk=wallet.pk, **bound).update(balance=F("balance") + delta):
        return None
    return Wallet.objects.filter(pk=wallet.pk).values_list("balance", flat=True).get()


def replay(
    wallet: Wallet, key: str, *, type: str, amount: Decimal, bill_id: Any, initiated_by: Any, retry_of: Any = None
) -> Transaction | None:
    """The entry this key already produced for this wallet, if the request is the same;
    ``IdempotencyKeyReusedError`` if the key was used for a different request."""
    existing = select_one(Transaction, wallet=wallet.pk, initiated_by=initiated_by, idempotency_key=key)
    if existing is None:
        return None
    same = (
        existing.type == type
        and abs(existing.amount) == abs(amount)
        and existing.bill_id == bill_id
        and existing.retry_of_id == retry_of
    )
    if not same:
        raise IdempotencyKeyReusedError()
    return existing


def raise_if_failed(tx: Transaction) -> Transaction:
    if tx.status == TransactionStatus.FAILED:
        raise InsufficientFundsError(
            details={
                "transaction_id": str(tx.pk),
                "amount": f"{abs(tx.amount):.2f}",
                "failure_reason": tx.failure_reason,
            }
        )
    return tx


def lock_wallet_by_id(wallet_id: Any) -> Wallet:
    """Lock a wallet known by its id FOR UPDATE (a refund, to the payment's wallet)."""
    return Wallet.objects.select_for_update().get(pk=wallet_id)


def ledger_entry(
    *,
    cluster: Cluster,
    wallet: Wallet,
    type: str,
    amount: Decimal,
    balance_after: Decimal | None,
    payer_id: Any,
    initiated_by: User,
    idempotency_key: str,
    failure_reason: str = "",
    **links: Any,
) -> Transaction:
    """Write one ledger entry — a payment, a failed payment, a credit or a refund — in
    one fixed statement. ``balance_after`` is the wallet's balance after the move, or
    ``None`` for a failed attempt (which moves nothing); ``links`` are ``bill``,
    ``retry_of``, ``reverses`` and ``note``."""
    return insert_row(
        Transaction(
            cluster=cluster,
            wallet=wallet,
            type=type,
            status=TransactionStatus.FAILED if failure_reason else TransactionStatus.COMPLETED,
            amount=amount,
            balance_after=balance_after,
            payer_id=payer_id,
            initiated_by=initiated_by,
            reference=new_reference(),
            idempotency_key=idempotency_key,
            failure_reason=failure_reason,
            **links,
        )
    )
