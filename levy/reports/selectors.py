"""Reads behind receipts and statements. Every read starts from an ``EstateAccess``
(or a membership it produced), so another estate's rows are never reachable.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from levy.common.errors import NotFoundError, ValidationError
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet

ZERO = Decimal("0.00")

# The ledger entries that get a receipt: money paid for a bill, and money put into a
# wallet. Refunds, adjustments and failed or pending entries do not.
RECEIPT_TYPES = (TransactionType.BILL_PAYMENT, TransactionType.DEPOSIT)


# --- receipts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """What a receipt shows, read from one completed ledger entry."""

    estate_name: str
    currency: str
    kind: str
    transaction_id: str
    ledger_reference: str
    amount: Decimal
    paid_at: datetime.datetime
    payer_name: str
    payer_email: str
    bill_reference: str
    bill_title: str
    balance_after: Decimal | None
    note: str

    @property
    def filename(self) -> str:
        return f"receipt-{self.ledger_reference}.pdf"


def receipt_of(tx: Transaction, *, access: EstateAccess) -> Receipt:
    """The receipt of a ledger entry from ``access_own_transaction`` or
    ``access_transaction``. Only completed bill payments and top-ups have one: any other
    entry is ``NotFoundError``, like one that does not exist."""
    if tx.cluster_id != access.cluster.pk or tx.status != TransactionStatus.COMPLETED or tx.type not in RECEIPT_TYPES:
        raise NotFoundError()
    # The payer is the caller on their own receipt: no need to read them.
    payer = access.user if tx.payer_id == access.user.pk else tx.payer
    is_payment = tx.type == TransactionType.BILL_PAYMENT
    return Receipt(
        estate_name=access.cluster.name,
        currency=access.cluster.currency,
        kind="Bill payment" if is_payment else "Wallet top-up",
        transaction_id=str(tx.pk),
        ledger_reference=tx.reference,
        amount=abs(tx.amount),
        paid_at=timezone.localtime(tx.created_at),
        payer_name=payer.name,
        payer_email=payer.email,
        bill_reference=tx.bill.reference if tx.bill is not None else "",
        bill_title=tx.bill.title if tx.bill is not None else "",
        balance_after=tx.balance_after,
        note=tx.note,
    )


# --- statements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementLine:
    created_at: datetime.datetime
    reference: str
    type: str
    description: str
    bill_reference: str
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True)
class Statement:
    """A member's wallet over a period: the balance before it, each completed ledger
    entry in it with the running balance, and the balance after it."""

    estate_name: str
    currency: str
    member_name: str
    member_email: str
    start: datetime.date
    end: datetime.date
    opening_balance: Decimal
    lines: list[StatementLine]

    @property
    def money_in(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.amount > 0), ZERO)

    @property
    def money_out(self) -> Decimal:
        return sum((-line.amount for line in self.lines if line.amount < 0), ZERO)

    @property
    def closing_balance(self) -> Decimal:
        return self.opening_balance + self.money_in - self.money_out

    def filename(self, extension: str) -> str:
        return f"statement-{self.start.isoformat()}-{self.end.isoformat()}.{extension}"


def _day_start(day: datetime.date) -> datetime.datetime:
    """Midnight at the start of ``day`` on the estate's calendar (settings.TIME_ZONE)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def _describe(tx: Transaction) -> str:
    if tx.type == TransactionType.BILL_PAYMENT and tx.bill is not None:
        return f"Payment: {tx.bill.title}"
    if tx.type == TransactionType.REFUND and tx.bill is not None:
        return f"Refund: {tx.bill.title}"
    label = TransactionType(tx.type).label
    return f"{label}: {tx.note}" if tx.note else label


# The days a statement may cover (the API's and the pages' bounds alike).
EARLIEST, LATEST = datetime.date(1900, 1, 1), datetime.date(2999, 12, 31)


def statement_period(start: datetime.date | None, end: datetime.date | None) -> tuple[datetime.date, datetime.date]:
    """The period a statement covers: ``start`` to ``end``, both included, by default
    from the first day of this month to today (the estates' calendar). A period out of
    bounds or that ends before it starts is ``ValidationError`` naming the field."""
    today = timezone.localdate()
    start = start or today.replace(day=1)
    end = end or today
    problems: dict[str, list[str]] = {}
    for name, day in (("start", start), ("end", end)):
        if not EARLIEST <= day <= LATEST:
            problems[name] = [f"Use a date from {EARLIEST.isoformat()} to {LATEST.isoformat()}."]
    if not problems and start > end:
        problems["start"] = ["The start must be on or before the end."]
    if problems:
        raise ValidationError(fields=problems)
    return start, end


def member_statement(
    *, access: EstateAccess, membership: Membership, start: datetime.date, end: datetime.date
) -> Statement:
    """``membership``'s statement from ``start`` to ``end`` (both days included).

    Every figure comes from the ledger: the opening balance is the sum of the wallet's
    completed entries before the period, each line adds one completed entry in it.
    Failed and pending entries moved no money and are not on a statement.
    """
    if membership.cluster_id != access.cluster.pk:
        raise NotFoundError()
    user = membership.user
    wallet = Wallet.objects.filter(cluster_id=access.cluster.pk, user_id=membership.user_id).first()
    opening = ZERO
    lines: list[StatementLine] = []
    if wallet is not None:
        since, until = _day_start(start), _day_start(end + datetime.timedelta(days=1))
        completed = Transaction.objects.filter(wallet=wallet, status=TransactionStatus.COMPLETED)
        opening = completed.filter(created_at__lt=since).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
        balance = opening
        in_period = Q(created_at__gte=since, created_at__lt=until)
        for tx in completed.filter(in_period).select_related("bill").order_by("created_at", "id"):
            balance += tx.amount
            lines.append(
                StatementLine(
                    created_at=timezone.localtime(tx.created_at),
                    reference=tx.reference,
                    type=tx.type,
                    description=_describe(tx),
                    bill_reference=tx.bill.reference if tx.bill is not None else "",
                    amount=tx.amount,
                    balance=balance,
                )
            )
    return Statement(
        estate_name=access.cluster.name,
        currency=access.cluster.currency,
        member_name=user.name,
        member_email=user.email,
        start=start,
        end=end,
        opening_balance=Decimal(opening),
        lines=lines,
    )
