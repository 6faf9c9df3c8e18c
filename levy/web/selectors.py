"""Reads that only the pages make: the header's estates and unread count, the
dashboard's collections over time. Every one is scoped to the person or to an
:class:`~levy.estates.access.EstateAccess`."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import DecimalField, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from levy.common.money import DECIMAL_PLACES, MAX_DIGITS
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.estates.selectors import person_memberships
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, TransactionStatus, TransactionType

if TYPE_CHECKING:
    from levy.accounts.models import User

MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)


def person_estates(user: User) -> list[Membership]:
    """The person's active memberships with their estates, by estate name (the switcher)."""
    return list(person_memberships(user).order_by("cluster__name"))


def unread_count(user: User) -> int:
    return Notification.objects.filter(recipient_id=user.pk, read_at__isnull=True).count()


@dataclass(frozen=True)
class Period:
    start: datetime.date
    amount: Decimal


def collections_by_week(access: EstateAccess, *, weeks: int = 12, today: datetime.date | None = None) -> list[Period]:
    """Money collected for bills each week (payments less refunds), the last ``weeks``
    weeks on the estate's calendar, oldest first, weeks without any as zero. One query,
    on the estate's recent ledger entries (index ``tx_cluster_recent_idx``)."""
    access.require_read_finances()
    day = today or timezone.localdate()
    this_monday = day - datetime.timedelta(days=day.weekday())
    first = this_monday - datetime.timedelta(weeks=weeks - 1)
    start = timezone.make_aware(datetime.datetime.combine(first, datetime.time.min))
    rows: Any = (
        Transaction.objects.filter(
            cluster_id=access.cluster.pk,
            created_at__gte=start,
            status=TransactionStatus.COMPLETED,
            type__in=[TransactionType.BILL_PAYMENT, TransactionType.REFUND],
        )
        .annotate(week=TruncWeek("created_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values("week")
        .annotate(net=Sum("amount", output_field=MONEY))
    )
    by_week = {row["week"].date(): -row["net"] for row in rows}
    return [
        Period(start=monday, amount=by_week.get(monday, Decimal("0.00")))
        for monday in (first + datetime.timedelta(weeks=i) for i in range(weeks))
    ]
