"""A member's bills as a page groups them (My bills): the ones still owed, in groups by
status, the earliest due first and a few of each; and the settled ones, newest first,
a page at a time.

On PostgreSQL one fixed statement does it all — every bill's status derived from the
member's facts (``levy.billing.status.status_sql``, from the one rule), the groups
counted and cut, the settled page found after its cursor — and returns whole rows only
for the bills drawn: a resident with two hundred bills costs the page what one with
twenty does. Its reference, and the way elsewhere (the SQLite demo), is
:func:`_member_bill_groups_in_python` over ``member_bill_states``; the tests compare
the two.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from levy.billing.models import Bill, BillAcknowledgement, BillDispute
from levy.billing.rules import LIVE_PAYMENT_PARAMS, live_payment_sql
from levy.billing.selectors.audience import bills_applying_to
from levy.billing.selectors.base import estate_today
from levy.billing.selectors.facts import member_bill_states, set_member_state
from levy.billing.status import STATUS_SQL_PARAMS, DisputeStatus, status_sql
from levy.common.db import column, model_columns, model_from_row, table
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.wallets.models import Transaction


@dataclass(frozen=True)
class BillGroups:
    """What :func:`member_bill_groups` found."""

    owing: int  # bills still owed, all of them (past ``max_owing`` too)
    # Each group's key: how many bills it holds (of the ``max_owing`` newest owed), and
    # the ones drawn, earliest due first.
    groups: dict[str, tuple[int, list[Bill]]]
    # The settled bills after the cursor, newest first: ``settled_size`` and one more
    # when there is a next page.
    settled: list[Bill]


@dataclass(frozen=True)
class GroupsAsked:
    """What :func:`member_bill_groups` was asked (its arguments, the member's own
    membership and the estate's today)."""

    membership: Membership
    groups: Mapping[str, Sequence[str]]
    settled: Sequence[str]
    shown: int
    expanded: str | None
    max_owing: int
    settled_after: tuple[datetime.datetime, Any] | None
    settled_size: int
    day: datetime.date


def member_bill_groups(
    *,
    access: EstateAccess,
    groups: Mapping[str, Sequence[str]],
    settled: Sequence[str],
    shown: int,
    expanded: str | None = None,
    max_owing: int,
    settled_after: tuple[datetime.datetime, Any] | None = None,
    settled_size: int,
    today: datetime.date | None = None,
) -> BillGroups:
    """The caller's bills (those ``member_bill_list`` lists) for a page that groups them.

    ``groups`` maps each group's key to the statuses (``BillStatus`` values) it holds —
    the statuses still owed; of the ``max_owing`` newest bills in them, each group's
    ``shown`` earliest due are drawn (all of the ``expanded`` group's), ordered by due
    date, then creation. ``settled``: the statuses of the settled list, newest first,
    after ``settled_after`` (the (created_at, id) of the last bill of the page before).
    Every bill drawn carries ``status``, ``acknowledged_at``, ``paid_at`` and
    ``can_pay``, as ``member_bill_list`` sets them."""
    if shown < 1:
        raise ValueError("shown must be at least 1")
    membership = access.require_member()
    day = today or estate_today()
    ask = GroupsAsked(membership, groups, settled, shown, expanded, max_owing, settled_after, settled_size, day)
    found = _member_bill_groups_in_sql(ask) if connection.vendor == "postgresql" else _member_bill_groups_in_python(ask)
    for _, drawn in found.groups.values():
        for bill in drawn:
            bill.cluster = access.cluster
    for bill in found.settled:
        bill.cluster = access.cluster
    return found


# --- the fixed statement ------------------------------------------------------------------------


@functools.cache
def _groups_sql(vendor: str) -> str:
    b, t, d, a = Bill, Transaction, BillDispute, BillAcknowledgement
    bill_id, created = column(b, "id"), column(b, "created_at")

    def dispute(status: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {table(d)} WHERE {column(d, 'bill')} = b.{bill_id} "  # noqa: S608 - identifiers from the models
            f"AND {column(d, 'user')} = %(user)s AND {column(d, 'status')} = {status})"
        )

    status = status_sql(
        {
            "cancelled": f"f.{column(b, 'cancelled_at')} IS NOT NULL",
            "paid": "f.f_paid_at IS NOT NULL",
            "waived": "f.f_waived",
            "disputed": "f.f_disputed",
            "past_due": f"f.{column(b, 'due_date')} < %(today)s",
            "acknowledged": "f.f_acknowledged_at IS NOT NULL",
        }
    )
    facts = "f_acknowledged_at, f_paid_at, f_waived, f_disputed"
    newest = f"{created} DESC, {bill_id} DESC"
    return (
        # Every bill that applies to the member (``bills_applying_to``), with their facts
        # (the joins of ``decorate_member_bills``: at most one acknowledgement and one
        # live payment each) and the status derived from them.
        f"WITH f AS (SELECT {model_columns(b, 'b')}, "  # noqa: S608 - identifiers from the models
        f"ack.{column(a, 'acknowledged_at')} AS f_acknowledged_at, paid.{column(t, 'created_at')} AS f_paid_at, "
        f"{dispute('%(upheld)s')} AS f_waived, {dispute('%(open)s')} AS f_disputed "
        f"FROM {table(b)} b "
        f"LEFT JOIN {table(a)} ack ON ack.{column(a, 'bill')} = b.{bill_id} AND ack.{column(a, 'user')} = %(user)s "
        f"LEFT JOIN {table(t)} paid ON paid.{column(t, 'bill')} = b.{bill_id} "
        f"AND paid.{column(t, 'payer')} = %(user)s AND {live_payment_sql('paid')} "
        f"WHERE b.{column(b, 'cluster')} = %(cluster)s AND (b.{column(b, 'user')} = %(user)s "
        f"OR (b.{column(b, 'user')} IS NULL AND b.{created} >= %(joined)s))), "
        f"mine AS (SELECT f.*, {status} AS f_status FROM f), "
        # The newest ``max_owing`` owed, each with its group; ranked by due date in it.
        "owing AS (SELECT mine.*, (%(group_keys)s::text[])[array_position(%(group_statuses)s::text[], f_status)] "
        f"AS f_group FROM mine WHERE f_status = ANY(%(group_statuses)s::text[]) ORDER BY {newest} "
        "LIMIT %(max_owing)s), "
        "ranked AS (SELECT owing.*, count(*) OVER (PARTITION BY f_group) AS f_total, row_number() OVER "
        f"(PARTITION BY f_group ORDER BY {column(b, 'due_date')}, {created}, {bill_id} DESC) AS f_rank FROM owing) "
        "SELECT f_group, f_total, f_rank, "
        "(SELECT count(*) FROM mine WHERE f_status = ANY(%(group_statuses)s::text[])), "
        f"{model_columns(b, 'ranked')}, {facts} "
        "FROM ranked WHERE f_rank <= %(shown)s OR f_group = %(expanded)s "
        # The settled page after its cursor.
        "UNION ALL (SELECT NULL, NULL, row_number() OVER (ORDER BY "
        f"{newest}), NULL, {model_columns(b, 'mine')}, {facts} FROM mine "
        "WHERE f_status = ANY(%(settled)s::text[]) AND (%(after_created)s::timestamptz IS NULL "
        f"OR ({created}, {bill_id}) < (%(after_created)s::timestamptz, %(after_id)s::uuid)) "
        f"ORDER BY {newest} LIMIT %(settled_size)s)"
    )


def _member_bill_groups_in_sql(ask: GroupsAsked) -> BillGroups:
    membership, groups, settled = ask.membership, ask.groups, ask.settled
    if not (membership.active and membership.is_resident):
        return BillGroups(0, {key: (0, []) for key in groups}, [])
    pairs = [(key, status) for key, statuses in groups.items() for status in statuses]
    params: dict[str, Any] = {
        "user": membership.user_id,
        "cluster": membership.cluster_id,
        "joined": membership.joined_at,
        "today": ask.day,
        "upheld": DisputeStatus.UPHELD.value,
        "open": DisputeStatus.OPEN.value,
        "group_keys": [key for key, _ in pairs],
        "group_statuses": [status for _, status in pairs],
        "settled": list(settled),
        "shown": ask.shown,
        "expanded": ask.expanded,
        "max_owing": ask.max_owing,
        "after_created": ask.settled_after[0] if ask.settled_after else None,
        "after_id": ask.settled_after[1] if ask.settled_after else None,
        "settled_size": ask.settled_size + 1,
        **STATUS_SQL_PARAMS,
        **LIVE_PAYMENT_PARAMS,
    }
    with connection.cursor() as cursor:
        cursor.execute(_groups_sql(connection.vendor), params)
        rows = cursor.fetchall()
    owing = 0
    drawn: dict[str, list[tuple[int, Bill]]] = {key: [] for key in groups}
    totals = dict.fromkeys(groups, 0)
    found_settled: list[tuple[int, Bill]] = []
    for row in rows:
        group, total, rank, owing_all = row[:4]
        bill, after = model_from_row(Bill, row, 4)
        acknowledged_at, paid_at, waived, disputed = row[after : after + 4]
        set_member_state(bill, acknowledged_at, paid_at, waived=waived, disputed=disputed, day=ask.day)
        if group is None:
            found_settled.append((rank, bill))
        else:
            owing, totals[group] = owing_all, total
            drawn[group].append((rank, bill))
    return BillGroups(
        owing=owing,
        groups={key: (totals[key], [bill for _, bill in sorted(drawn[key], key=_rank)]) for key in groups},
        settled=[bill for _, bill in sorted(found_settled, key=_rank)],
    )


def _rank(item: tuple[int, Bill]) -> int:
    return item[0]


# --- the reference -------------------------------------------------------------------------------


def _member_bill_groups_in_python(ask: GroupsAsked) -> BillGroups:
    """:func:`member_bill_groups` from every bill's state in Python, whole rows read for
    the ones drawn."""
    membership, groups, settled, day = ask.membership, ask.groups, ask.settled, ask.day
    shown, expanded, max_owing, settled_after = ask.shown, ask.expanded, ask.max_owing, ask.settled_after
    settled_size = ask.settled_size
    group_of = {status: key for key, statuses in groups.items() for status in statuses}
    states = member_bill_states(membership=membership, today=day)
    owing = [state for state in states if state.status in group_of]
    # Stable: bills due the same day and created at the same instant stay newest id first.
    by_due = sorted(owing[:max_owing], key=lambda state: (state.due_date, state.created_at))
    grouped: dict[str, list[Any]] = {key: [] for key in groups}
    for state in by_due:
        grouped[group_of[state.status]].append(state)
    rest = [state for state in states if state.status in settled]
    if settled_after is not None:
        rest = [state for state in rest if (state.created_at, state.pk) < settled_after]
    page = rest[: settled_size + 1]
    shown_of = {key: listed if key == expanded else listed[:shown] for key, listed in grouped.items()}
    wanted = [*(state for listed in shown_of.values() for state in listed), *page]
    found = bills_applying_to(membership).in_bulk([state.pk for state in wanted])
    by_pk = {state.pk: state.set_on(found[state.pk]) for state in wanted}
    return BillGroups(
        owing=len(owing),
        groups={key: (len(grouped[key]), [by_pk[s.pk] for s in shown_of[key]]) for key in groups},
        settled=[by_pk[state.pk] for state in page],
    )
