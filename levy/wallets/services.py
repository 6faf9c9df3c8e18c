"""Money movement. Every service here is one transaction, idempotent by key, audited.

Concurrency rules (see docs/decisions/0003-ledger-and-locking.md):
- the member's wallet row, locked FOR UPDATE, serialises everything that moves or
  decides about that member's money (pay, dispute, credit, refund);
- a payment takes a FOR SHARE lock on the bill first, so a cancellation or a change of
  terms cannot slip between its checks and its commit; lock order is bill, then wallet;
- the balance moves only by a conditional UPDATE (``balance >= amount``) and a CHECK
  constraint keeps it at or above zero;
- a unique constraint allows one completed payment per bill per member, and one ledger
  entry per (wallet, initiator, idempotency key).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction

from levy.audit.services import audit_record
from levy.billing import rules
from levy.billing.counters import counter_add
from levy.billing.models import Bill
from levy.common.db import insert_row, refresh_for_share, select_one
from levy.common.errors import (
    IdempotencyKeyReusedError,
    InsufficientFundsError,
    NotFoundError,
    RuleViolation,
    ValidationError,
)
from levy.common.money import MAX_AMOUNT, parse_amount
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import PaymentsPermissions
from levy.monitoring import metrics
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.rules import require_not_own_wallet

if TYPE_CHECKING:
    from levy.accounts.models import User

MAX_KEY_LENGTH = 128
ZERO = Decimal("0.00")


def _new_reference() -> str:
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


# --- wallets ----------------------------------------------------------------------------


def wallet_ensure(*, cluster: Cluster, user: User) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(cluster=cluster, user=user)
    return wallet


def member_wallet(*, access: EstateAccess) -> Wallet:
    """The caller's wallet in the estate, created (empty) on first use."""
    membership = access.require_member()
    wallet = Wallet.objects.filter(cluster=access.cluster, user_id=membership.user_id).first()
    if wallet is None:
        wallet = wallet_ensure(cluster=access.cluster, user=access.user)
    return wallet


def wallet_lock(*, cluster: Cluster, user: User) -> Wallet:
    """Lock (creating if needed) the member's wallet until the transaction ends."""
    wallet = select_one(Wallet, "FOR UPDATE", cluster=cluster.pk, user=user.pk)
    if wallet is None:
        wallet_ensure(cluster=cluster, user=user)
        wallet = Wallet.objects.select_for_update().get(cluster=cluster, user=user)
    return wallet


def _move_balance(wallet: Wallet, delta: Decimal) -> Decimal | None:
    """Apply ``delta`` to the balance unless it would go below zero or above the most a
    balance can hold; return the new balance, or None when refused."""
    qn = connection.ops.quote_name
    table, balance, key = qn(Wallet._meta.db_table), qn("balance"), qn("id")
    bound = f"{balance} >= %s" if delta < 0 else f"{balance} <= %s"
    limit = -delta if delta < 0 else MAX_AMOUNT - delta
    # One statement: the guarded update and the new balance. Identifiers come from the model.
    statement = f"UPDATE {table} SET {balance} = {balance} + %s WHERE {key} = %s AND {bound} RETURNING {balance}"  # noqa: S608
    pk = Wallet._meta.get_field("id").get_db_prep_value(wallet.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(statement, [delta, pk, limit])
        row = cursor.fetchone()
    return None if row is None else Wallet._meta.get_field("balance").to_python(row[0])


def _replay(
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


def _raise_if_failed(tx: Transaction) -> Transaction:
    if tx.status == TransactionStatus.FAILED:
        raise InsufficientFundsError(
            details={
                "transaction_id": str(tx.pk),
                "amount": f"{abs(tx.amount):.2f}",
                "failure_reason": tx.failure_reason,
            }
        )
    return tx


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
        wallet = wallet_lock(cluster=access.cluster, user=membership.user)
        replayed = _replay(
            wallet, key, type=TransactionType.DEPOSIT, amount=value, bill_id=None, initiated_by=access.user.pk
        )
        if replayed is not None:
            return replayed
        balance = _move_balance(wallet, value)
        if balance is None:
            raise ValidationError(
                fields={"amount": [f"This credit would take the wallet past the most it can hold ({MAX_AMOUNT})."]}
            )
        tx = Transaction.objects.create(
            cluster=access.cluster,
            wallet=wallet,
            type=TransactionType.DEPOSIT,
            status=TransactionStatus.COMPLETED,
            amount=value,
            balance_after=balance,
            payer_id=membership.user_id,
            initiated_by=access.user,
            reference=_new_reference(),
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
    locked with ``wallet_lock``) and move its balance: money that reached the estate's
    account for the wallet's owner (a provider top-up). The ledger's (wallet,
    initiator, key) constraint makes a second entry for the same key impossible."""
    balance = _move_balance(wallet, amount)
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
            reference=_new_reference(),
            idempotency_key=idempotency_key,
            note=note,
        )
    )


# --- payments ---------------------------------------------------------------------------


def bill_pay(
    *,
    access: EstateAccess,
    bill: Bill,
    idempotency_key: str,
    origin: Origin = Origin(),
    retry_of: Transaction | None = None,
) -> Transaction:
    """The caller pays ``bill`` from their wallet.

    Refusals by a rule raise ``RuleViolation`` and record nothing. A wallet that cannot
    cover the amount records a failed entry (committed), notifies the payer, and raises
    ``InsufficientFundsError``. The same key again returns — or raises — what the first
    call did, without moving money again.
    """
    membership = access.require_member()
    key = validate_idempotency_key(idempotency_key)
    user = access.user
    retry_id = retry_of.pk if retry_of is not None else None
    with transaction.atomic():
        refresh_for_share(bill, also=(Membership, membership.pk))
        bill.cluster = access.cluster
        wallet = wallet_lock(cluster=access.cluster, user=user)
        replayed = _replay(
            wallet,
            key,
            type=TransactionType.BILL_PAYMENT,
            amount=bill.amount,
            bill_id=bill.pk,
            initiated_by=user.pk,
            retry_of=retry_id,
        )
        if replayed is not None:
            return _raise_if_failed(replayed)
        refusal = rules.payment_refusal(bill, rules.read_member_facts(bill=bill, user=user))
        if refusal is not None:
            metrics.count_payment(metrics.PAYMENT_REFUSED, refusal.code)
            raise refusal
        balance = _move_balance(wallet, -bill.amount)
        context = bill_context(bill)
        if balance is None:
            tx = Transaction.objects.create(
                cluster=access.cluster,
                wallet=wallet,
                type=TransactionType.BILL_PAYMENT,
                status=TransactionStatus.FAILED,
                amount=-bill.amount,
                balance_after=None,
                bill=bill,
                payer=user,
                initiated_by=user,
                reference=_new_reference(),
                idempotency_key=key,
                failure_reason="insufficient_funds",
                retry_of=retry_of,
            )
            audit_record(
                action="payment.failed",
                target=tx,
                actor=user,
                cluster=access.cluster,
                origin=origin,
                data={"bill_id": str(bill.pk), "amount": f"{bill.amount:.2f}", "reason": "insufficient_funds"},
            )
            metrics.count_payment_on_commit(metrics.PAYMENT_FAILED, "insufficient_funds")
            notify(
                event=NotificationEvents.PAYMENT_FAILED,
                cluster=access.cluster,
                recipients=Recipients.users(membership.user_id),
                context={
                    **context,
                    "transaction_id": str(tx.pk),
                    "failure_reason": "insufficient_funds",
                    "failure_message": "your wallet balance is below the amount due.",
                },
                event_key=f"PAYMENT_FAILED:tx:{tx.pk}",
            )
        else:
            # No savepoint: a unique violation aborts the transaction, and the refusal
            # raised below rolls all of it back.
            try:
                tx = insert_row(
                    Transaction(
                        cluster=access.cluster,
                        wallet=wallet,
                        type=TransactionType.BILL_PAYMENT,
                        status=TransactionStatus.COMPLETED,
                        amount=-bill.amount,
                        balance_after=balance,
                        bill=bill,
                        payer=user,
                        initiated_by=user,
                        reference=_new_reference(),
                        idempotency_key=key,
                        retry_of=retry_of,
                    )
                )
            except IntegrityError:
                # The unique constraint caught a second payment the checks did not.
                metrics.count_payment(metrics.PAYMENT_REFUSED, "bill_already_paid")
                raise RuleViolation("You have already paid this bill.", code="bill_already_paid") from None
            counter_add(bill_id=bill.pk, user_id=user.pk, paid=1, collected=bill.amount)
            audit_record(
                action="payment.completed",
                target=tx,
                actor=user,
                cluster=access.cluster,
                origin=origin,
                data={"bill_id": str(bill.pk), "amount": f"{bill.amount:.2f}"},
            )
            metrics.count_payment_on_commit(metrics.PAYMENT_COMPLETED)
            notify(
                event=NotificationEvents.PAYMENT_SUCCESSFUL,
                cluster=access.cluster,
                recipients=Recipients.users(membership.user_id),
                context={
                    **context,
                    "transaction_id": str(tx.pk),
                    "transaction_reference": tx.reference,
                    "wallet_balance": f"{balance:.2f}",
                },
                event_key=f"PAYMENT_SUCCESSFUL:tx:{tx.pk}",
            )
    return _raise_if_failed(tx)


def transaction_retry(
    *, access: EstateAccess, failed: Transaction, idempotency_key: str, origin: Origin = Origin()
) -> Transaction:
    """Retry a failed bill payment of the caller's: it succeeds once, or fails with a
    clear reason, and the new entry links to the one it retries."""
    access.require_member()
    if failed.cluster_id != access.cluster.pk or failed.payer_id != access.user.pk:
        raise NotFoundError()
    if (
        failed.type != TransactionType.BILL_PAYMENT
        or failed.status != TransactionStatus.FAILED
        or failed.bill_id is None
    ):
        metrics.count_payment(metrics.PAYMENT_REFUSED, "transaction_not_retryable")
        raise RuleViolation("Only a failed bill payment can be retried.", code="transaction_not_retryable")
    bill = Bill.objects.select_related("cluster").get(pk=failed.bill_id)
    return bill_pay(access=access, bill=bill, idempotency_key=idempotency_key, origin=origin, retry_of=failed)


def bill_payment_refund(
    *, access: EstateAccess, payment: Transaction, idempotency_key: str, note: str = "", origin: Origin = Origin()
) -> Transaction:
    """Return a payment of a cancelled bill to the payer's wallet with a reversing
    entry, ``note`` being the reason. The payment itself stays on the ledger,
    unchanged; the payer is notified (``PAYMENT_REFUNDED``)."""
    access.require(PaymentsPermissions.ManageTransaction)
    key = validate_idempotency_key(idempotency_key)
    if payment.cluster_id != access.cluster.pk:
        raise NotFoundError()
    if (
        payment.type != TransactionType.BILL_PAYMENT
        or payment.status != TransactionStatus.COMPLETED
        or payment.bill_id is None
    ):
        raise RuleViolation("Only a completed bill payment can be refunded.", code="transaction_not_refundable")
    require_not_own_wallet(access=access, member_user_id=payment.payer_id, action="refund")
    with transaction.atomic():
        bill = Bill.objects.select_for_update().get(pk=payment.bill_id)
        if bill.cancelled_at is None:
            raise RuleViolation("Only payments of cancelled bills are refunded.", code="bill_not_cancelled")
        wallet = Wallet.objects.select_for_update().get(pk=payment.wallet_id)
        amount = -payment.amount
        replayed = _replay(
            wallet, key, type=TransactionType.REFUND, amount=amount, bill_id=bill.pk, initiated_by=access.user.pk
        )
        if replayed is not None:
            return replayed
        if Transaction.objects.filter(reverses=payment).exists():
            raise RuleViolation("This payment has already been refunded.", code="payment_already_refunded")
        balance = _move_balance(wallet, amount)
        if balance is None:
            raise RuleViolation(
                "The refund would take the wallet past the most it can hold.", code="wallet_balance_limit"
            )
        try:
            with transaction.atomic():
                tx = Transaction.objects.create(
                    cluster=access.cluster,
                    wallet=wallet,
                    type=TransactionType.REFUND,
                    status=TransactionStatus.COMPLETED,
                    amount=amount,
                    balance_after=balance,
                    bill=bill,
                    payer_id=payment.payer_id,
                    initiated_by=access.user,
                    reference=_new_reference(),
                    idempotency_key=key,
                    reverses=payment,
                    note=(note or "")[:2000],
                )
        except IntegrityError:
            raise RuleViolation("This payment has already been refunded.", code="payment_already_refunded") from None
        counter_add(bill_id=bill.pk, user_id=payment.payer_id, collected=-amount)
        audit_record(
            action="payment.refund",
            target=tx,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={
                "payment_id": str(payment.pk),
                "amount": f"{amount:.2f}",
                "bill_id": str(bill.pk),
                "reason": tx.note,
            },
        )
        bill.cluster = access.cluster
        notify(
            event=NotificationEvents.PAYMENT_REFUNDED,
            cluster=access.cluster,
            recipients=Recipients.users(payment.payer_id),
            context={
                **bill_context(bill),
                "amount": f"{amount:.2f}",
                "reason": tx.note or "no reason given",
                "transaction_id": str(tx.pk),
                "payment_id": str(payment.pk),
                "wallet_balance": f"{balance:.2f}",
            },
            event_key=f"PAYMENT_REFUNDED:tx:{tx.pk}",
        )
    return tx
