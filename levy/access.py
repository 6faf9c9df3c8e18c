"""Every way into an estate's objects: one module for every ``access_*`` helper.

A view (API or page) turns the identifiers of its URL into objects here, then hands
the objects to a selector or a service, which never look anything up by id
themselves. The caller's :class:`EstateAccess` comes from :func:`access_cluster`; each
helper below filters by its estate, so an object of another estate — or one the caller
may not see, like another member's bill — raises the same ``NotFoundError`` as one that
does not exist. A helper for managers checks the caller's permission first
(``PermissionDeniedError``).

``levy.estates.access`` holds the core these build on (``EstateAccess``,
``access_cluster``); it sits below the apps, so their services can take an
``EstateAccess``. This module sits above the apps' models and below the views.
"""

from __future__ import annotations

import functools
from typing import TypeVar

from django.db import connection
from django.db.models import Model, QuerySet

from levy.billing.models import Bill, BillDispute, BillSchedule
from levy.common.db import column, db_value, fetch_one, model_columns, model_from_row, table
from levy.common.errors import NotFoundError
from levy.estates.access import EstateAccess, access_cluster, parse_uuid
from levy.estates.models import MemberImport, Membership
from levy.estates.permissions import MembersPermissions
from levy.wallets.models import Transaction

__all__ = [
    "EstateAccess",
    "access_bill_as_member",
    "access_bill_as_staff",
    "access_cluster",
    "access_dispute",
    "access_member_import",
    "access_membership",
    "access_own_transaction",
    "access_schedule",
    "access_transaction",
]

M = TypeVar("M", bound=Model)


def _one(rows: QuerySet[M]) -> M:
    """The one row, or ``NotFoundError``: missing and not yours are the same answer."""
    found = rows.first()
    if found is None:
        raise NotFoundError()
    return found


# --- members ----------------------------------------------------------------------------


def access_membership(access: EstateAccess, user_id: object) -> Membership:
    """A membership of the caller's estate, by the member's user id (404 otherwise)."""
    pk = parse_uuid(user_id)
    return _one(Membership.objects.select_related("user").filter(cluster_id=access.cluster.pk, user_id=pk))


def access_member_import(access: EstateAccess, import_id: object) -> MemberImport:
    """A members import of the caller's estate, for a caller who manages its members."""
    access.require(MembersPermissions.ManageMembers)
    return _one(MemberImport.objects.filter(cluster_id=access.cluster.pk, pk=parse_uuid(import_id)).defer("content"))


# --- bills and disputes -----------------------------------------------------------------


@functools.cache
def _bill_of_member_sql(vendor: str) -> str:
    cluster, user, created = column(Bill, "cluster"), column(Bill, "user"), column(Bill, "created_at")
    # The rule of ``bills_applying_to``, as one fixed statement (every resident action reads it).
    return (
        f"SELECT {model_columns(Bill, 'b')} FROM {table(Bill)} b "  # noqa: S608 - identifiers from the models
        f"WHERE b.{column(Bill, 'id')} = %(bill)s AND b.{cluster} = %(cluster)s "
        f"AND (b.{user} = %(user)s OR (b.{user} IS NULL AND b.{created} >= %(joined)s))"
    )


def access_bill_as_member(access: EstateAccess, bill_id: object) -> Bill:
    """A bill that applies to the caller; anything else is ``NotFoundError``."""
    membership = access.require_member()
    pk = parse_uuid(bill_id)
    if not (membership.active and membership.is_resident):
        raise NotFoundError()
    row = fetch_one(
        _bill_of_member_sql(connection.vendor),
        {
            "bill": db_value(Bill, "id", pk),
            "cluster": db_value(Bill, "cluster", membership.cluster_id),
            "user": db_value(Bill, "user", membership.user_id),
            "joined": db_value(Bill, "created_at", membership.joined_at),
        },
    )
    if row is None:
        raise NotFoundError()
    bill, _ = model_from_row(Bill, row)
    bill.cluster = access.cluster
    return bill


def access_bill_as_staff(access: EstateAccess, bill_id: object) -> Bill:
    """Any bill of the caller's estate, for a caller who may read its finances."""
    access.require_read_finances()
    return _one(Bill.objects.select_related("cluster").filter(cluster_id=access.cluster.pk, pk=parse_uuid(bill_id)))


def access_dispute(access: EstateAccess, dispute_id: object) -> BillDispute:
    """A dispute of the caller's estate, for a caller who may read its finances."""
    access.require_read_finances()
    rows = BillDispute.objects.select_related("bill", "user").filter(
        cluster_id=access.cluster.pk, pk=parse_uuid(dispute_id)
    )
    return _one(rows)


def access_schedule(access: EstateAccess, schedule_id: object) -> BillSchedule:
    """A recurring bill of the caller's estate, for a caller who may read its finances."""
    access.require_read_finances()
    schedule = _one(BillSchedule.objects.filter(cluster_id=access.cluster.pk, pk=parse_uuid(schedule_id)))
    schedule.cluster = access.cluster
    return schedule


# --- ledger entries ---------------------------------------------------------------------


def access_own_transaction(access: EstateAccess, transaction_id: object) -> Transaction:
    """One of the caller's own ledger entries."""
    membership = access.require_member()
    rows = Transaction.objects.select_related("bill").filter(
        cluster_id=access.cluster.pk, payer_id=membership.user_id, pk=parse_uuid(transaction_id)
    )
    return _one(rows)


def access_transaction(access: EstateAccess, transaction_id: object) -> Transaction:
    """Any ledger entry of the caller's estate, for a caller who may read its finances."""
    access.require_read_finances()
    return _one(
        Transaction.objects.select_related("bill").filter(cluster_id=access.cluster.pk, pk=parse_uuid(transaction_id))
    )
