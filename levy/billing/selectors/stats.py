"""Counts per bill (the manager's view of a bill): read from the counters, or recomputed from the facts."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest

from levy.billing.models import Bill, BillCounter, DisputeStatus
from levy.billing.selectors.audience import _audience_of_outer_bill
from levy.billing.selectors.base import MONEY, ZERO, estate_today
from levy.billing.selectors.facts import acknowledged_fact, dispute_fact, paid_fact
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionStatus, TransactionType


def _count_audience(fact: Exists | None = None) -> Coalesce:
    members = Membership.objects.filter(_audience_of_outer_bill())
    if fact is not None:
        members = members.filter(fact)
    counted = members.order_by().values("cluster_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _with_derived_stats(bills: QuerySet[Any], day: datetime.date) -> QuerySet[Any]:
    return bills.annotate(
        stat_outstanding=Case(
            When(cancelled_at__isnull=False, then=Value(0)),
            default=Greatest(F("stat_eligible") - F("stat_paid") - F("stat_waived"), Value(0)),
            output_field=IntegerField(),
        ),
        stat_overdue=Case(
            When(
                Q(cancelled_at__isnull=True, due_date__lt=day),
                then=Greatest(F("stat_eligible") - F("stat_paid") - F("stat_waived") - F("stat_disputed"), Value(0)),
            ),
            default=Value(0),
            output_field=IntegerField(),
        ),
    )


def _counter_sum(field: str, output: IntegerField | DecimalField, zero: Any) -> Coalesce:
    total = (
        BillCounter.objects.filter(bill_id=OuterRef("pk"))
        .order_by()
        .values("bill_id")
        .annotate(t=Sum(field))
        .values("t")
    )
    return Coalesce(Subquery(total, output_field=output), Value(zero), output_field=output)


def bills_with_stats(bills: QuerySet[Bill], *, today: datetime.date | None = None) -> QuerySet[Any]:
    """Annotate each bill with its counts over the members it applies to:
    ``stat_eligible``, ``stat_acknowledged`` (members who acknowledged, whatever their
    status now), ``stat_paid``, ``stat_waived``, ``stat_disputed`` (open disputes),
    ``stat_overdue`` (past due and neither paid, waived nor disputed),
    ``stat_outstanding`` (members who still owe it) and ``stat_collected`` (net money
    received for it). Counts only members the bill applies to, so the status counts
    partition the audience.

    Read from the bill's counters (a few rows per bill, whatever the estate's size);
    :func:`bills_with_stats_recomputed` derives the same numbers from the facts."""
    day = today or estate_today()
    counts = IntegerField()
    return _with_derived_stats(
        bills.annotate(
            stat_eligible=_counter_sum("eligible", counts, 0),
            stat_acknowledged=_counter_sum("acknowledged", counts, 0),
            stat_paid=_counter_sum("paid", counts, 0),
            stat_waived=_counter_sum("waived", counts, 0),
            stat_disputed=_counter_sum("disputed", counts, 0),
            stat_collected=_counter_sum("collected", MONEY, ZERO),
        ),
        day,
    )


def bills_with_stats_recomputed(bills: QuerySet[Bill], *, today: datetime.date | None = None) -> QuerySet[Any]:
    """The same annotations as :func:`bills_with_stats`, counted from the facts over
    each bill's audience. Its cost grows with the estate: it is the reference the
    counters are checked against and rebuilt from, not a read path."""
    day = today or estate_today()
    bill = OuterRef(OuterRef("pk"))
    member = OuterRef("user_id")
    return _with_derived_stats(
        bills.annotate(
            stat_eligible=_count_audience(),
            stat_acknowledged=_count_audience(acknowledged_fact(bill, member)),
            stat_paid=_count_audience(paid_fact(bill, member)),
            stat_waived=_count_audience(dispute_fact(bill, member, DisputeStatus.UPHELD)),
            stat_disputed=_count_audience(dispute_fact(bill, member, DisputeStatus.OPEN)),
            stat_collected=Coalesce(
                Subquery(
                    Transaction.objects.filter(
                        bill_id=OuterRef("pk"),
                        status=TransactionStatus.COMPLETED,
                        type__in=[TransactionType.BILL_PAYMENT, TransactionType.REFUND],
                    )
                    .order_by()
                    .values("bill_id")
                    .annotate(net=-Sum("amount"))
                    .values("net"),
                    output_field=MONEY,
                ),
                Value(ZERO),
                output_field=MONEY,
            ),
        ),
        day,
    )


@dataclass(frozen=True)
class BillStats:
    eligible: int
    acknowledged: int
    paid: int
    disputed: int
    waived: int
    overdue: int
    outstanding: int
    collected_amount: Decimal

    @classmethod
    def attach_opening(cls, bill: Bill, *, eligible: int, today: datetime.date | None = None) -> None:
        """Set on a bill just issued the ``stat_*`` attributes :func:`bills_with_stats`
        would read: its audience, and no facts yet (the bill creation's response)."""
        live = bill.cancelled_at is None
        past_due = live and (today or estate_today()) > bill.due_date
        values: dict[str, int | Decimal] = {"eligible": eligible, "acknowledged": 0, "paid": 0, "waived": 0}
        values.update(disputed=0, overdue=eligible if past_due else 0, outstanding=eligible if live else 0)
        values["collected"] = ZERO
        for name, value in values.items():
            setattr(bill, f"stat_{name}", value)

    @classmethod
    def of(cls, bill: Any) -> BillStats:
        """Read the ``stat_*`` annotations of a bill from :func:`bills_with_stats`."""
        return cls(
            eligible=bill.stat_eligible,
            acknowledged=bill.stat_acknowledged,
            paid=bill.stat_paid,
            disputed=bill.stat_disputed,
            waived=bill.stat_waived,
            overdue=bill.stat_overdue,
            outstanding=bill.stat_outstanding,
            collected_amount=bill.stat_collected,
        )
