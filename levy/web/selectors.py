"""Reads that only the pages make: the header's estates and unread count, the
dashboard's collections over time. Every one is scoped to the person or to an
:class:`~levy.estates.access.EstateAccess`."""

from __future__ import annotations

import datetime
import functools
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import connection
from django.db.models import DecimalField, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from levy.common.db import column, db_value, fetch_all, model_columns, model_from_row, table
from levy.common.money import DECIMAL_PLACES, MAX_DIGITS
from levy.estates.access import EstateAccess
from levy.estates.models import Cluster, Membership
from levy.estates.selectors import person_memberships
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, TransactionStatus, TransactionType

if TYPE_CHECKING:
    from levy.accounts.models import User

logger = logging.getLogger("levy.web")

MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)


def person_estates(user: User) -> list[Membership]:
    """The person's active memberships with their estates, by estate name (the switcher)."""
    return list(person_memberships(user).order_by("cluster__name"))


def unread_count(user: User) -> int:
    return Notification.objects.filter(recipient_id=user.pk, read_at__isnull=True).count()


@functools.cache
def _header_sql(vendor: str) -> str:
    m, c, n = Membership, Cluster, Notification
    return (
        # One row when the person belongs to no estate (the count, then NULLs), else one
        # per active membership, by estate name: what the two reads above return.
        f"SELECT unread.n, {model_columns(m, 'm')}, {model_columns(c, 'c')} "  # noqa: S608 - identifiers from the models
        f"FROM (SELECT count(*) AS n FROM {table(n)} WHERE {column(n, 'recipient')} = %(user)s "
        f"AND {column(n, 'read_at')} IS NULL) unread "
        f"LEFT JOIN ({table(m)} m JOIN {table(c)} c ON c.{column(c, 'id')} = m.{column(m, 'cluster')}) "
        f"ON m.{column(m, 'user')} = %(user)s AND m.{column(m, 'active')} "
        f"ORDER BY c.{column(c, 'name')}, m.{column(m, 'id')}"
    )


def header_reads(user: User) -> tuple[list[Membership], int]:
    """What every page's header shows of the person: ``person_estates`` and
    ``unread_count`` — on PostgreSQL in one fixed statement, compared with the two in
    ``tests/web/test_layout.py``."""
    if connection.vendor != "postgresql":
        return person_estates(user), unread_count(user)
    rows = fetch_all(_header_sql(connection.vendor), {"user": db_value(Membership, "user", user.pk)})
    memberships = []
    for row in rows:
        if row[1] is None:  # no active membership
            continue
        membership, after = model_from_row(Membership, row, 1)
        membership.cluster = model_from_row(Cluster, row, after)[0]
        memberships.append(membership)
    return memberships, int(rows[0][0])


@dataclass(frozen=True)
class Period:
    start: datetime.date
    amount: Decimal


# A week's collections are final once it is over: the ledger is append-only, every
# payment and refund is written completed with the time it is made, and a refund of
# an old payment counts in the week of the refund. A week that ended more than
# SETTLED_AFTER ago (a payment stamped in its last instant has long committed) is read
# once and kept in the cache; the chart's SQL then reads only the weeks still open —
# at data set L, a thousand rows instead of a million (docs/performance.md).
SETTLED_AFTER = datetime.timedelta(hours=1)
CACHED_WEEK_SECONDS = 120 * 24 * 3600  # past the oldest week a chart shows


def _week_key(cluster_id: object, tz: datetime.tzinfo, monday: datetime.date) -> str:
    return f"levy:collections:v1:{cluster_id}:{tz}:{monday.isoformat()}"


def collections_by_week(access: EstateAccess, *, weeks: int = 12, today: datetime.date | None = None) -> list[Period]:
    """Money collected for bills each week (payments less refunds), the last ``weeks``
    weeks on the estate's calendar, oldest first, weeks without any as zero. One query,
    on the estate's recent ledger entries (index ``tx_cluster_recent_idx``), for the
    weeks not yet in the cache (see ``SETTLED_AFTER``); a cache that cannot be reached
    costs the full read, never the page."""
    access.require_read_finances()
    tz = timezone.get_current_timezone()
    day = today or timezone.localdate()
    this_monday = day - datetime.timedelta(days=day.weekday())
    first = this_monday - datetime.timedelta(weeks=weeks - 1)
    mondays = [first + datetime.timedelta(weeks=i) for i in range(weeks)]

    def begins(monday: datetime.date) -> datetime.datetime:
        return timezone.make_aware(datetime.datetime.combine(monday, datetime.time.min), tz)

    settled_before = timezone.now() - SETTLED_AFTER
    settled = [m for m in mondays if begins(m + datetime.timedelta(weeks=1)) <= settled_before]
    keys = {m: _week_key(access.cluster.pk, tz, m) for m in settled}
    try:
        cached = cache.get_many(list(keys.values()))
    except Exception:  # the cache is an optimisation here
        logger.warning("cache unavailable: the chart reads every week", exc_info=True)
        cached = {}
    known = {m: Decimal(cached[keys[m]]) for m in settled if keys[m] in cached}
    read_from = next((m for m in mondays if m not in known), this_monday)
    rows: Any = (
        Transaction.objects.filter(
            cluster_id=access.cluster.pk,
            created_at__gte=begins(read_from),
            status=TransactionStatus.COMPLETED,
            type__in=[TransactionType.BILL_PAYMENT, TransactionType.REFUND],
        )
        .annotate(week=TruncWeek("created_at", tzinfo=tz))
        .order_by()
        .values("week")
        .annotate(net=Sum("amount", output_field=MONEY))
    )
    read = {row["week"].date(): -row["net"] for row in rows}
    amounts = {m: known[m] if m in known else read.get(m, Decimal("0.00")) for m in mondays}
    fresh = {keys[m]: str(amounts[m]) for m in settled if m not in known}
    if fresh:
        try:
            cache.set_many(fresh, timeout=CACHED_WEEK_SECONDS)
        except Exception:  # as above
            logger.warning("cache unavailable: the chart's weeks are not kept", exc_info=True)
    return [Period(start=m, amount=amounts[m]) for m in mondays]
