"""Per-bill counters (:class:`~levy.billing.models.BillCounter`), kept in step with the facts.

A bill's counts over its audience (eligible, acknowledged, paid, waived, open
disputes) and the money collected for it change only when

* the bill is created (its audience at issue time: ``counters_open``),
* one member's fact changes (acknowledge, dispute, resolution, payment, refund:
  ``counter_add``, called by the service in the same transaction), or
* a membership joins or leaves the audience of bills (added, re-added, deactivated,
  residency changed: ``counters_move_member`` with the before and after states).

Races with membership changes are closed by locks: membership changes lock the
estate row (as bill creation does, through its reference sequence) and the
membership row; the fact-changing services hold the membership row FOR SHARE, so a
deactivation either sees their fact or they see the member gone.

``counters_drift`` recomputes the counts from the facts (the slow, obviously-correct
query, :func:`levy.billing.selectors.bills_with_stats_recomputed`) and lists the
differences; ``recount`` rewrites the rows from that recomputation
(``manage.py bill_counters --check`` / ``--rebuild``).
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, QuerySet

from levy.billing import locks
from levy.billing.models import Bill, BillCounter, DisputeStatus
from levy.billing.selectors import bill_audience, bills_with_stats, bills_with_stats_recomputed
from levy.billing.selectors.facts import acknowledged_fact, dispute_fact, paid_fact
from levy.common.db import column, db_value, table

# Rows per bill that concurrent writers spread over (by member).
SLOTS = 16
FIELDS = ("eligible", "acknowledged", "paid", "waived", "disputed", "collected")
RECOUNT_BATCH = 200


def slot_of(user_id: Any) -> int:
    if user_id is None:
        return 0
    return (user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))).int % SLOTS


@functools.cache
def _upsert_sql(vendor: str) -> str:
    """Add one row's deltas to the counter row (bill, slot), creating it if needed:
    what :func:`_upsert_orm` (its reference) does, in one statement."""
    t = table(BillCounter)
    columns = ", ".join(column(BillCounter, name) for name in ("bill", "slot", *FIELDS))
    updates = ", ".join(
        f"{column(BillCounter, f)} = {t}.{column(BillCounter, f)} + EXCLUDED.{column(BillCounter, f)}" for f in FIELDS
    )
    placeholders = ", ".join(["%s"] * (2 + len(FIELDS)))
    return (
        f"INSERT INTO {t} ({columns}) VALUES ({placeholders}) "  # noqa: S608 - identifiers from the model; values are parameters
        f"ON CONFLICT ({column(BillCounter, 'bill')}, {column(BillCounter, 'slot')}) DO UPDATE SET {updates}"
    )


def _upsert(rows: Iterable[tuple[Any, int, int, int, int, int, int, Decimal]]) -> None:
    """Add each row's deltas to the counter row (bill, slot), creating it if needed."""
    prepared = [(db_value(BillCounter, "bill", r[0]), *r[1:]) for r in rows]
    if not prepared:
        return
    with connection.cursor() as cursor:
        cursor.executemany(_upsert_sql(connection.vendor), prepared)


def _upsert_orm(rows: Iterable[tuple[Any, int, int, int, int, int, int, Decimal]]) -> None:
    """``_upsert`` through the ORM (a get-or-create and an ``F()`` update per row): its reference."""
    for row in rows:
        counter, _ = BillCounter.objects.get_or_create(bill_id=row[0], slot=row[1])
        deltas: tuple[Any, ...] = row[2:]
        BillCounter.objects.filter(pk=counter.pk).update(
            **{name: F(name) + delta for name, delta in zip(FIELDS, deltas, strict=True)}
        )


def counter_add(
    *,
    bill_id: Any,
    user_id: Any,
    eligible: int = 0,
    acknowledged: int = 0,
    paid: int = 0,
    waived: int = 0,
    disputed: int = 0,
    collected: Decimal = Decimal("0.00"),
) -> None:
    """Record one member's change of facts for one bill (call inside the transaction)."""
    _upsert([(bill_id, slot_of(user_id), eligible, acknowledged, paid, waived, disputed, collected)])


def counters_open(bill: Bill, *, billable_members: int | None = None) -> int:
    """A new bill's counter: its audience at issue time. For an estate-wide bill that is
    every billable member, which PostgreSQL keeps counted on the estate row
    (``Cluster.billable_members``, read under the estate's lock by bill creation);
    elsewhere (the SQLite demo, which has no triggers) they are counted here. Returns
    the audience."""
    if bill.user_id is not None:
        eligible = 1
    elif billable_members is not None and connection.vendor == "postgresql":
        eligible = billable_members
    else:
        eligible = bill_audience(bill).count()
    _upsert([(bill.pk, slot_of(bill.user_id), eligible, 0, 0, 0, 0, Decimal("0.00"))])
    return eligible


# --- memberships moving in and out of audiences ---------------------------------------------


@dataclass(frozen=True)
class MemberState:
    """What decides which bills a membership is in the audience of."""

    cluster_id: Any
    user_id: Any
    billed: bool  # active and resident
    joined_at: datetime.datetime

    @classmethod
    def of(cls, membership: Any) -> MemberState:
        return cls(
            cluster_id=membership.cluster_id,
            user_id=membership.user_id,
            billed=bool(membership.active and membership.is_resident),
            joined_at=membership.joined_at,
        )


def _contributions(state: MemberState | None) -> dict[Any, tuple[int, int, int, int, int]]:
    """Per bill in the member's audience: (eligible, acknowledged, paid, waived, disputed)."""
    if state is None or not state.billed:
        return {}
    bill = Bill.objects.filter(cluster_id=state.cluster_id).filter(
        Q(user_id=state.user_id) | Q(user__isnull=True, created_at__gte=state.joined_at)
    )
    rows = bill.annotate(
        f_ack=acknowledged_fact(OuterRef("pk"), state.user_id),
        f_paid=paid_fact(OuterRef("pk"), state.user_id),
        f_waived=dispute_fact(OuterRef("pk"), state.user_id, DisputeStatus.UPHELD),
        f_disputed=dispute_fact(OuterRef("pk"), state.user_id, DisputeStatus.OPEN),
    ).values_list("pk", "f_ack", "f_paid", "f_waived", "f_disputed")
    return {pk: (1, int(a), int(p), int(w), int(d)) for pk, a, p, w, d in rows}


def counters_move_member(before: MemberState | None, after: MemberState | None) -> None:
    """A membership changed from ``before`` to ``after`` (either may be None): take its
    facts out of the bills it left and add them to the bills it joined. The caller holds
    the estate row and the membership row locked."""
    old = _contributions(before)
    new = _contributions(after)
    zero = (0, 0, 0, 0, 0)
    state = after or before
    if state is None:
        return
    user_id = state.user_id
    rows = []
    for bill_id in old.keys() | new.keys():
        delta = [n - o for n, o in zip(new.get(bill_id, zero), old.get(bill_id, zero), strict=True)]
        if any(delta):
            rows.append((bill_id, slot_of(user_id), *delta, Decimal("0.00")))
    _upsert(rows)


# --- checking and rebuilding ----------------------------------------------------------------


def _batches(ids: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


STAT_FIELDS = ("stat_eligible", "stat_acknowledged", "stat_paid", "stat_waived", "stat_disputed", "stat_collected")


def _stats(annotate: Callable[[QuerySet[Bill]], QuerySet[Any]], ids: list[Any]) -> dict[Any, tuple[Any, ...]]:
    """Each bill's counts, by ``bills_with_stats`` (the counters) or
    ``bills_with_stats_recomputed`` (the facts)."""
    rows = annotate(Bill.objects.filter(pk__in=ids)).values_list("pk", *STAT_FIELDS)
    return {r[0]: tuple(r[1:]) for r in rows}


@dataclass(frozen=True)
class Drift:
    bill_id: Any
    counted: tuple[Any, ...]
    recomputed: tuple[Any, ...]


def counters_drift(bills: QuerySet[Bill]) -> list[Drift]:
    """Bills whose counters differ from a recomputation from the facts."""
    drifts = []
    ids = list(bills.order_by("pk").values_list("pk", flat=True))
    for batch in _batches(ids, RECOUNT_BATCH):
        counted, recomputed = _stats(bills_with_stats, batch), _stats(bills_with_stats_recomputed, batch)
        drifts += [Drift(pk, counted[pk], recomputed[pk]) for pk in batch if counted[pk] != recomputed[pk]]
    return drifts


def recount(bills: QuerySet[Bill]) -> int:
    """Rewrite the counters of ``bills`` from the facts; returns the number of bills.
    Each batch locks its bills and their estates while it is rewritten. Also used when
    an edit changes whom a bill is for."""
    ids = list(bills.order_by("pk").values_list("pk", flat=True))
    for batch in _batches(ids, RECOUNT_BATCH):
        with transaction.atomic():
            # Fact changes hold the bill FOR SHARE; membership changes lock the estate row.
            # Bills first, then estates: the order of levy.billing.locks.
            locks.lock_bills(batch)
            locks.lock_estates_of_bills(batch)
            values = _stats(bills_with_stats_recomputed, batch)
            BillCounter.objects.filter(bill_id__in=batch).delete()
            BillCounter.objects.bulk_create(
                BillCounter(bill_id=pk, slot=0, **dict(zip(FIELDS, values[pk], strict=True))) for pk in batch
            )
    return len(ids)
