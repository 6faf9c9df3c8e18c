"""Paying bills from wallets: a payment, its retry, and its refund. Every service here
is one transaction, idempotent by key, audited; it takes its locks through
``levy.billing.locks`` and writes the ledger through ``levy.wallets.ledger``.

A payment is a check and a write, under the locks: :func:`_check_payment` asks the
rules (``levy.billing.rules.payment_refusal``) and raises their refusal;
:func:`_write_payment` moves the balance and records either the payment or the failed
attempt — the entry, its audit event, its metric and the payer's notification.

A refund of a live bill's payment reopens the bill for its payer, who may pay it
again: each completed payment of a bill by a member carries a ``settlement`` number
(their earlier payments of it, all refunded), unique per (bill, payer), so at most one
counts as paid however the requests race (docs/decisions/0028-refunds-of-live-bills.md).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from levy.audit.services import audit_record
from levy.billing import locks, rules
from levy.billing.counters import counter_add
from levy.billing.models import Bill
from levy.common.errors import NotFoundError, RuleViolation
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.permissions import PaymentsPermissions
from levy.monitoring import metrics
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify
from levy.wallets.ledger import (
    ledger_entry,
    move_balance,
    raise_if_failed,
    replay,
    validate_idempotency_key,
)
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.rules import require_not_own_wallet

INSUFFICIENT_FUNDS = "insufficient_funds"


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
    with transaction.atomic():
        wallet = locks.lock_member_action(bill, membership, cluster=access.cluster, user=user)
        replayed = replay(
            wallet,
            key,
            type=TransactionType.BILL_PAYMENT,
            amount=bill.amount,
            bill_id=bill.pk,
            initiated_by=user.pk,
            retry_of=retry_of.pk if retry_of is not None else None,
        )
        if replayed is not None:
            return raise_if_failed(replayed)
        facts = _check_payment(bill, user)
        tx = _write_payment(
            access=access,
            bill=bill,
            wallet=wallet,
            key=key,
            retry_of=retry_of,
            origin=origin,
            settlement=facts.payments,
        )
    return raise_if_failed(tx)


def _check_payment(bill: Bill, user: Any) -> rules.MemberFacts:
    """Raise the rules' refusal of this payment, if any (counted by its code); else
    return the facts it was decided on."""
    facts = rules.read_member_facts(bill=bill, user=user)
    refusal = rules.payment_refusal(bill, facts)
    if refusal is not None:
        metrics.count_payment(metrics.PAYMENT_REFUSED, refusal.code)
        raise refusal
    return facts


def _write_payment(
    *,
    access: EstateAccess,
    bill: Bill,
    wallet: Wallet,
    key: str,
    retry_of: Transaction | None,
    origin: Origin,
    settlement: int,
) -> Transaction:
    """Move the bill's amount out of the wallet and record the payment — or, when the
    wallet cannot cover it, record the failed attempt — with its audit event, metric and
    notification of the payer. ``settlement`` is the number of the member's earlier
    completed payments of the bill, read under the wallet's lock: none of them is live
    (the rules said so), so this one takes the next number, and a concurrent payment
    that took the same one hits the unique constraint."""
    user = access.user
    balance = move_balance(wallet, -bill.amount)
    entry: dict[str, Any] = {
        "cluster": access.cluster,
        "wallet": wallet,
        "type": TransactionType.BILL_PAYMENT,
        "amount": -bill.amount,
        "payer_id": user.pk,
        "initiated_by": user,
        "idempotency_key": key,
        "bill": bill,
        "retry_of": retry_of,
        "settlement": settlement,
    }
    audit_data = {"bill_id": str(bill.pk), "amount": f"{bill.amount:.2f}"}
    context = bill_context(bill)
    if balance is None:
        tx = ledger_entry(**entry, balance_after=None, failure_reason=INSUFFICIENT_FUNDS)
        action, audit_data["reason"] = "payment.failed", INSUFFICIENT_FUNDS
        metrics.count_payment_on_commit(metrics.PAYMENT_FAILED, INSUFFICIENT_FUNDS)
        event = NotificationEvents.PAYMENT_FAILED
        details = {
            "transaction_id": str(tx.pk),
            "failure_reason": INSUFFICIENT_FUNDS,
            "failure_message": "your wallet balance is below the amount due.",
        }
    else:
        # No savepoint: a unique violation aborts the transaction, and the refusal
        # raised below rolls all of it back.
        try:
            tx = ledger_entry(**entry, balance_after=balance)
        except IntegrityError:
            # The unique constraint caught a second payment the checks did not.
            metrics.count_payment(metrics.PAYMENT_REFUSED, "bill_already_paid")
            raise RuleViolation("You have already paid this bill.", code="bill_already_paid") from None
        counter_add(bill_id=bill.pk, user_id=user.pk, paid=1, collected=bill.amount)
        action = "payment.completed"
        metrics.count_payment_on_commit(metrics.PAYMENT_COMPLETED)
        event = NotificationEvents.PAYMENT_SUCCESSFUL
        details = {
            "transaction_id": str(tx.pk),
            "transaction_reference": tx.reference,
            "wallet_balance": f"{balance:.2f}",
        }
    audit_record(action=action, target=tx, actor=user, cluster=access.cluster, origin=origin, data=audit_data)
    notify(
        event=event,
        cluster=access.cluster,
        recipients=Recipients.users(user.pk),
        context={**context, **details},
        event_key=f"{event.value}:tx:{tx.pk}",
    )
    return tx


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


def refund_refusal(payment: Transaction, *, refunded: bool) -> RuleViolation | None:
    """Why ``payment`` cannot be refunded, or None: only a completed bill payment, once.
    ``bill_payment_refund`` applies it (under its locks); a page reads it to offer a
    refund, or to say why there is none."""
    if (
        payment.type != TransactionType.BILL_PAYMENT
        or payment.status != TransactionStatus.COMPLETED
        or payment.bill_id is None
    ):
        return RuleViolation("Only a completed bill payment can be refunded.", code="transaction_not_refundable")
    if refunded:
        return RuleViolation("This payment has already been refunded.", code="payment_already_refunded")
    return None


def bill_payment_refund(
    *, access: EstateAccess, payment: Transaction, idempotency_key: str, note: str = "", origin: Origin = Origin()
) -> Transaction:
    """Return a payment to the payer's wallet with a reversing entry, ``note`` being the
    reason. The payment itself stays on the ledger, unchanged; the payer is notified
    (``PAYMENT_REFUNDED``).

    A payment of a live bill stops counting as paid: the refund reopens the bill
    (``reopens_bill``), the payer's status for it is what it would be without the
    payment, they may pay it again, and the bill's counters lose the payment (``paid``,
    while the payer is in its audience, and the money ``collected``). A payment of a
    cancelled bill stays counted as paid; only the money collected goes down.

    Locks: the bill and the payer's membership ``FOR SHARE`` (a cancellation, an edit
    or a membership change waits, so "live" and "in the audience" hold until the
    commit), then the payer's wallet ``FOR UPDATE``, which serialises the refund with
    the payer's own payments and with other refunds of the same payment."""
    access.require(PaymentsPermissions.ManageTransaction)
    key = validate_idempotency_key(idempotency_key)
    if payment.cluster_id != access.cluster.pk:
        raise NotFoundError()
    if (refusal := refund_refusal(payment, refunded=False)) is not None:
        raise refusal
    require_not_own_wallet(access=access, member_user_id=payment.payer_id, action="refund")
    payer_id = payment.payer_id
    with transaction.atomic():
        bill = locks.share_bill_and_member(bill_id=payment.bill_id, cluster_id=access.cluster.pk, user_id=payer_id)
        wallet = locks.lock_wallet_by_id(payment.wallet_id)
        amount = -payment.amount
        replayed = replay(
            wallet, key, type=TransactionType.REFUND, amount=amount, bill_id=bill.pk, initiated_by=access.user.pk
        )
        if replayed is not None:
            return replayed
        refunded = Transaction.objects.filter(reverses=payment).exists()
        if (refusal := refund_refusal(payment, refunded=refunded)) is not None:
            raise refusal
        live = bill.cancelled_at is None
        balance = move_balance(wallet, amount)
        if balance is None:
            raise RuleViolation(
                "The refund would take the wallet past the most it can hold.", code="wallet_balance_limit"
            )
        try:
            with transaction.atomic():
                tx = ledger_entry(
                    cluster=access.cluster,
                    wallet=wallet,
                    type=TransactionType.REFUND,
                    amount=amount,
                    balance_after=balance,
                    payer_id=payer_id,
                    initiated_by=access.user,
                    idempotency_key=key,
                    bill=bill,
                    reverses=payment,
                    reopens_bill=live,
                    note=(note or "")[:2000],
                )
        except IntegrityError:
            raise RuleViolation("This payment has already been refunded.", code="payment_already_refunded") from None
        # The payment counted as paid only while the payer is in the bill's audience.
        unpaid = live and rules.read_member_facts(bill=bill, user_id=payer_id).applies
        counter_add(bill_id=bill.pk, user_id=payer_id, paid=-int(unpaid), collected=-amount)
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
                "reopens_bill": live,
            },
        )
        bill.cluster = access.cluster
        notify(
            event=NotificationEvents.PAYMENT_REFUNDED,
            cluster=access.cluster,
            recipients=Recipients.users(payer_id),
            context={
                **bill_context(bill),
                "amount": f"{amount:.2f}",
                "reason": tx.note or "no reason given",
                "transaction_id": str(tx.pk),
                "payment_id": str(payment.pk),
                "wallet_balance": f"{balance:.2f}",
                "reopens_bill": live,
                "then": " The bill is unpaid again: pay it when you are ready." if live else "",
            },
            event_key=f"PAYMENT_REFUNDED:tx:{tx.pk}",
        )
    return tx
