"""Tenancy for billing objects: a bill or dispute of the caller's estate, or the same NotFoundError as a missing one."""

from __future__ import annotations

import functools

from django.db import connection

from levy.billing.models import Bill, BillDispute
from levy.common.db import column, db_value, fetch_one, model_columns, model_from_row, table
from levy.common.errors import NotFoundError
from levy.estates.access import EstateAccess, parse_uuid


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
    bill = Bill.objects.select_related("cluster").filter(cluster_id=access.cluster.pk, pk=parse_uuid(bill_id)).first()
    if bill is None:
        raise NotFoundError()
    return bill


def access_dispute(access: EstateAccess, dispute_id: object) -> BillDispute:
    access.require_read_finances()
    dispute = (
        BillDispute.objects.select_related("bill", "user")
        .filter(cluster_id=access.cluster.pk, pk=parse_uuid(dispute_id))
        .first()
    )
    if dispute is None:
        raise NotFoundError()
    return dispute
