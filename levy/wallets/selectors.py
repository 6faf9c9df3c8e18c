"""Reads of wallets and the ledger: a member's own entries, the estate's ledger with its
filters, and the sums the ledger check compares."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from levy.common.errors import NotFoundError
from levy.common.listing import Listing
from levy.estates.access import EstateAccess
from levy.estates.models import Cluster, Membership
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet

ZERO = Decimal("0.00")


# --- the ledger -------------------------------------------------------------------------


def member_transactions(access: EstateAccess) -> QuerySet[Transaction]:
    membership = access.require_member()
    return Transaction.objects.filter(cluster_id=access.cluster.pk, payer_id=membership.user_id).order_by(
        "-created_at", "-id"
    )


def cluster_transactions(access: EstateAccess, **filters: Any) -> QuerySet[Transaction]:
    access.require_read_finances()
    q = Q(cluster_id=access.cluster.pk)
    return Transaction.objects.filter(q, **filters).order_by("-created_at", "-id")


def member_transaction_list(*, access: EstateAccess) -> Listing[Transaction]:
    """The caller's own ledger entries, newest first."""
    return Listing(member_transactions(access))


@dataclass(frozen=True)
class TransactionFilters:
    """A manager's ledger filters; ``None`` leaves a filter out."""

    user_id: uuid.UUID | None = None  # the payer
    type: str | None = None  # a TransactionType
    status: str | None = None  # a TransactionStatus
    bill_id: uuid.UUID | None = None
    search: str | None = None  # part of the payer's name or email
    created_from: datetime.date | None = None  # first day, on the estate's calendar (included)
    created_to: datetime.date | None = None  # last day (included)


def _day_start(day: datetime.date) -> datetime.datetime:
    """Midnight starting ``day`` on the estate's calendar (``settings.TIME_ZONE``)."""
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_current_timezone())


def transaction_list(
    *, access: EstateAccess, filters: TransactionFilters = TransactionFilters()
) -> Listing[Transaction]:
    """The estate's ledger entries, newest first. Needs a financial permission."""
    names = (("user_id", "payer_id"), ("type", "type"), ("status", "status"), ("bill_id", "bill_id"))
    lookups: dict[str, Any] = {name: getattr(filters, key) for key, name in names if getattr(filters, key) is not None}
    if filters.created_from is not None:
        lookups["created_at__gte"] = _day_start(filters.created_from)
    if filters.created_to is not None:
        lookups["created_at__lt"] = _day_start(filters.created_to + datetime.timedelta(days=1))
    rows = cluster_transactions(access, **lookups)
    term = (filters.search or "").strip()
    if term:
        rows = rows.filter(Q(payer__name__icontains=term) | Q(payer__email__icontains=term))
    return Listing(rows)


def member_wallet_balance(*, access: EstateAccess, membership: Membership) -> Decimal:
    """A member's wallet balance (zero before their wallet exists), for staff who may
    read the estate's finances; ``membership`` comes from ``access_membership``."""
    access.require_read_finances()
    if membership.cluster_id != access.cluster.pk:
        raise NotFoundError()
    balance = (
        Wallet.objects.filter(cluster_id=access.cluster.pk, user_id=membership.user_id)
        .values_list("balance", flat=True)
        .first()
    )
    return ZERO if balance is None else Decimal(balance)


# --- sums -------------------------------------------------------------------------------


def ledger_balance(wallet: Wallet) -> Decimal:
    """The sum of the wallet's completed entries: what ``wallet.balance`` must equal."""
    total = Transaction.objects.filter(wallet=wallet, status=TransactionStatus.COMPLETED).aggregate(
        total=Coalesce(Sum("amount"), ZERO)
    )["total"]
    return Decimal(total)


def cluster_revenue(cluster: Cluster) -> Decimal:
    """The estate's revenue, derived from the ledger: bill payments net of refunds."""
    total = Transaction.objects.filter(
        cluster=cluster,
        status=TransactionStatus.COMPLETED,
        type__in=[TransactionType.BILL_PAYMENT, TransactionType.REFUND],
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return -Decimal(total)


def cluster_money_received(cluster: Cluster) -> Decimal:
    """Money that entered the estate's wallets from outside (deposits, adjustments)."""
    total = Transaction.objects.filter(
        cluster=cluster,
        status=TransactionStatus.COMPLETED,
        type__in=[TransactionType.DEPOSIT, TransactionType.ADJUSTMENT],
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    return Decimal(total)
