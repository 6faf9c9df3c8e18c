"""CSV exports of the manager lists, from the lists' own selectors.

An export is the list without pages: the selector's rows in the selector's ordering,
read through a server-side cursor (``QuerySet.iterator``) one chunk at a time, each
chunk decorated the way the list decorates a page (one statement per chunk), then
written out line by line. Memory holds one chunk whatever the estate's size, and the
first lines leave as soon as the first chunk is read (docs/decisions/0022).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.http import StreamingHttpResponse
from django.utils import timezone

from levy.billing.models import Bill
from levy.billing.selectors import (
    BillFilters,
    BillMemberFilters,
    DisputeFilters,
    MemberFilters,
    bill_list,
    bill_member_list,
    dispute_list,
    member_list,
)
from levy.common.listing import Listing
from levy.estates.access import EstateAccess
from levy.reports.csvfiles import amount, csv_chunks, text
from levy.wallets.selectors import TransactionFilters, transaction_list

# Rows read from the database, and decorated, at a time.
CHUNK_SIZE = 1000


def listing_rows(listing: Listing[Any], *, chunk_size: int | None = None) -> Iterator[Any]:
    """Every row of a list selector, in its ordering, decorated chunk by chunk.

    Inside a (read-only) transaction: there the server-side cursor hands rows over as
    PostgreSQL finds them. Outside one, Django declares it WITH HOLD, and PostgreSQL
    runs the whole query before the first row — at data set L the deposits (50,000 of
    the estate's 6 million entries) took over 30 s to arrive and gunicorn killed the
    worker. A client that goes away closes the generator, which ends the transaction.

    ``cursor_tuple_fraction = 1``: PostgreSQL plans a cursor for its first 10% of rows
    by default, and chose to walk the estate's 6 million entries in time order (over
    30 s) to find the deposits that a scan and a sort return in 2 s. An export reads
    every row, so it is planned for every row."""
    size = chunk_size or CHUNK_SIZE
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        rows = listing.rows.order_by(*listing.ordering).iterator(chunk_size=size)
        while chunk := list(itertools.islice(rows, size)):
            yield from listing.page(chunk)


def _when(value: Any) -> str:
    return "" if value is None else value.isoformat()


def _id(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Export:
    """One export: its file name, its header and its rows (already CSV cells)."""

    name: str
    header: list[str]
    rows: Iterator[list[str]]


def _rows(listing: Listing[Any], cells: Callable[[Any], list[str]]) -> Iterator[list[str]]:
    return (cells(row) for row in listing_rows(listing))


# --- bills with their counts ----------------------------------------------------------------

BILL_HEADER = [
    "id",
    "reference",
    "title",
    "category",
    "amount",
    "currency",
    "due_date",
    "allow_payment_after_due",
    "is_cluster_wide",
    "user_id",
    "cancelled_at",
    "created_at",
    "schedule_id",
    "schedule_period",
    "eligible",
    "acknowledged",
    "paid",
    "disputed",
    "waived",
    "overdue",
    "outstanding",
    "collected_amount",
]


def bills_export(*, access: EstateAccess, filters: BillFilters) -> Export:
    """What the bill list shows, every bill the filters keep."""
    currency = access.cluster.currency

    def cells(bill: Any) -> list[str]:
        return [
            str(bill.pk),
            bill.reference,
            text(bill.title),
            bill.category,
            amount(bill.amount),
            currency,
            bill.due_date.isoformat(),
            str(bill.allow_payment_after_due).lower(),
            str(bill.user_id is None).lower(),
            _id(bill.user_id),
            _when(bill.cancelled_at),
            _when(bill.created_at),
            _id(bill.schedule_id),
            _id(bill.schedule_period),
            str(bill.stat_eligible),
            str(bill.stat_acknowledged),
            str(bill.stat_paid),
            str(bill.stat_disputed),
            str(bill.stat_waived),
            str(bill.stat_overdue),
            str(bill.stat_outstanding),
            amount(bill.stat_collected),
        ]

    return Export("bills", BILL_HEADER, _rows(bill_list(access=access, filters=filters), cells))


# --- one bill, member by member -------------------------------------------------------------

BILL_MEMBER_HEADER = ["user_id", "name", "email", "status", "acknowledged_at", "paid_at", "dispute_id"]


def bill_members_export(*, bill: Bill, filters: BillMemberFilters) -> Export:
    """Each member of one bill's audience (a bill from ``access_bill_as_staff``) with
    their status, as the bill's member list."""

    def cells(membership: Any) -> list[str]:
        return [
            str(membership.user_id),
            text(membership.user.name),
            text(membership.user.email),
            str(membership.status),
            _when(membership.acknowledged_at),
            _when(membership.paid_at),
            _id(membership.dispute_id),
        ]

    listing = bill_member_list(bill=bill, filters=filters)
    return Export(f"bill-{bill.reference}-members", BILL_MEMBER_HEADER, _rows(listing, cells))


# --- members with their bill summary --------------------------------------------------------

MEMBER_HEADER = [
    "id",
    "email",
    "name",
    "role",
    "is_resident",
    "active",
    "joined_at",
    "outstanding_count",
    "outstanding_amount",
    "overdue_count",
    "unacknowledged_count",
    "disputed_count",
    "paid_count",
    "currency",
]


def members_export(*, access: EstateAccess, filters: MemberFilters) -> Export:
    """The member list with each member's bill summary (the hover card's figures)."""
    currency = access.cluster.currency

    def cells(membership: Any) -> list[str]:
        return [
            str(membership.user_id),
            text(membership.user.email),
            text(membership.user.name),
            membership.role,
            str(membership.is_resident).lower(),
            str(membership.active).lower(),
            _when(membership.joined_at),
            str(membership.sum_outstanding_count),
            amount(membership.sum_outstanding_amount),
            str(membership.sum_overdue_count),
            str(membership.sum_unacknowledged_count),
            str(membership.sum_disputed_count),
            str(membership.sum_paid_count),
            currency,
        ]

    return Export("members", MEMBER_HEADER, _rows(member_list(access=access, filters=filters), cells))


# --- the ledger -----------------------------------------------------------------------------

TRANSACTION_HEADER = [
    "id",
    "reference",
    "created_at",
    "type",
    "status",
    "amount",
    "currency",
    "balance_after",
    "user_id",
    "bill_id",
    "initiated_by_id",
    "failure_reason",
    "note",
    "retry_of_id",
    "reverses_id",
]


def transactions_export(*, access: EstateAccess, filters: TransactionFilters) -> Export:
    """The estate's ledger entries the filters keep, newest first."""
    currency = access.cluster.currency

    def cells(tx: Any) -> list[str]:
        return [
            str(tx.pk),
            tx.reference,
            _when(tx.created_at),
            tx.type,
            tx.status,
            amount(tx.amount),
            currency,
            amount(tx.balance_after),
            str(tx.payer_id),
            _id(tx.bill_id),
            str(tx.initiated_by_id),
            tx.failure_reason,
            text(tx.note),
            _id(tx.retry_of_id),
            _id(tx.reverses_id),
        ]

    return Export("transactions", TRANSACTION_HEADER, _rows(transaction_list(access=access, filters=filters), cells))


# --- disputes -------------------------------------------------------------------------------

DISPUTE_HEADER = [
    "id",
    "status",
    "created_at",
    "bill_id",
    "bill_reference",
    "bill_title",
    "amount",
    "currency",
    "user_id",
    "member_name",
    "member_email",
    "reason",
    "resolved_at",
    "resolved_by_id",
    "resolution_note",
]


def disputes_export(*, access: EstateAccess, filters: DisputeFilters, queue: bool = False) -> Export:
    """The estate's disputes the filters keep, in the order the list shows them."""
    currency = access.cluster.currency

    def cells(dispute: Any) -> list[str]:
        return [
            str(dispute.pk),
            dispute.status,
            _when(dispute.created_at),
            str(dispute.bill_id),
            dispute.bill.reference,
            text(dispute.bill.title),
            amount(dispute.bill.amount),
            currency,
            str(dispute.user_id),
            text(dispute.user.get_full_name()),
            text(dispute.user.email),
            text(dispute.reason),
            _when(dispute.resolved_at),
            _id(dispute.resolved_by_id),
            text(dispute.resolution_note),
        ]

    listing = dispute_list(access=access, filters=filters, queue=queue)
    return Export("disputes", DISPUTE_HEADER, _rows(listing, cells))


def export_response(export: Export) -> StreamingHttpResponse:
    """The export as it is read: the header leaves at once, then the rows in blocks."""
    response = StreamingHttpResponse(csv_chunks(export.header, export.rows), content_type="text/csv; charset=utf-8")
    filename = f"{export.name}-{timezone.localdate().isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    # A proxy (nginx) passes each block on as it comes instead of buffering the file.
    response["X-Accel-Buffering"] = "no"
    return response
