"""The estate at a glance, for its managers."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import (
    Count,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from levy.billing.models import Bill, BillDispute, DisputeStatus
from levy.billing.rules import COMPLETED_PAYMENT
from levy.billing.selectors.base import MONEY, ZERO, estate_today
from levy.billing.selectors.stats import bills_with_stats
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionType


@dataclass(frozen=True)
class Dashboard:
    currency: str
    billed_amount: Decimal
    collected_amount: Decimal
    outstanding_amount: Decimal
    overdue_amount: Decimal
    collection_rate: Decimal
    open_disputes: int
    bills_count: int
    members_count: int
    # The last completed payments, refunded or not: each has ``refunded_at``, the time
    # of the refund that reversed it (None if none did). A refunded payment is not money
    # collected: ``collected_amount`` and the weekly collections are net of refunds.
    recent_payments: list[Transaction]
    due_soon: list[Any]


def cluster_dashboard(access: EstateAccess, *, today: datetime.date | None = None, recent: int = 10) -> Dashboard:
    """The admin's at-a-glance numbers for one estate (live bills only)."""
    access.require_read_finances()
    day = today or estate_today()
    cluster = access.cluster
    live = Bill.objects.filter(cluster=cluster, cancelled_at__isnull=True)
    # Sums over the live bills' counter rows: the status counts partition each audience,
    # so the per-row differences add up to the per-bill ones.
    owed = F("counters__eligible") - F("counters__paid") - F("counters__waived")

    def total(amount: Any, condition: Q | None = None) -> Coalesce:
        return Coalesce(Sum(amount, filter=condition, output_field=MONEY), Value(ZERO), output_field=MONEY)

    totals = live.aggregate(
        bills=Count("pk", distinct=True),
        billed=total(F("amount") * F("counters__eligible")),
        outstanding=total(F("amount") * owed),
        overdue=total(F("amount") * (owed - F("counters__disputed")), Q(due_date__lt=day)),
        collected=total(F("counters__collected")),
    )
    billed, collected = totals["billed"], totals["collected"]
    rate = (collected / billed).quantize(Decimal("0.0001")) if billed else Decimal("0")
    due_soon = list(
        bills_with_stats(live.filter(due_date__gte=day), today=day)
        .filter(stat_outstanding__gt=0)
        .order_by("due_date", "reference")
        .values("id", "reference", "title", "amount", "due_date", "stat_outstanding")[:recent]
    )
    return Dashboard(
        currency=cluster.currency,
        billed_amount=billed,
        collected_amount=collected,
        outstanding_amount=totals["outstanding"],
        overdue_amount=totals["overdue"],
        collection_rate=rate,
        # All open disputes (from the index alone), less those on cancelled bills (few):
        # cheaper than joining every open dispute to its bill.
        open_disputes=BillDispute.objects.filter(cluster=cluster, status=DisputeStatus.OPEN).count()
        - BillDispute.objects.filter(
            cluster=cluster, status=DisputeStatus.OPEN, bill__cancelled_at__isnull=False
        ).count(),
        bills_count=totals["bills"],
        members_count=Membership.objects.filter(cluster=cluster, active=True).count(),
        recent_payments=list(
            Transaction.objects.filter(cluster=cluster, **COMPLETED_PAYMENT)
            .select_related("bill", "payer")
            .annotate(refunded_at=Subquery(_refund_of(OuterRef("pk")).values("created_at")[:1]))
            .order_by("-created_at", "-id")[:recent]
        ),
        due_soon=due_soon,
    )


def _refund_of(payment: Any) -> Any:
    """The refund that reverses ``payment`` (at most one: ``tx_one_reversal``)."""
    return Transaction.objects.filter(reverses=payment, type=TransactionType.REFUND)
