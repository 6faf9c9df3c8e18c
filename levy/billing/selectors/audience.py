"""Who a bill applies to: the audience rule, from either side (bill or member)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import (
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.lookups import IsNull

from levy.billing.models import Bill
from levy.estates.models import Cluster, Membership

if TYPE_CHECKING:
    from levy.accounts.models import User


def billable_memberships(cluster_id: Any) -> QuerySet[Membership]:
    """Only active resident memberships are billed."""
    return Membership.objects.filter(cluster_id=cluster_id, active=True, is_resident=True)


def billable_member_count(cluster: Cluster) -> int:
    """How many members an estate-wide bill issued now applies to: on PostgreSQL the
    count its triggers keep on the estate (``Cluster.billable_members``, no rows
    counted); on the SQLite demo, which has no such triggers, counted."""
    if connection.vendor == "postgresql":
        return cluster.billable_members
    return billable_memberships(cluster.pk).count()


def bill_audience(bill: Bill) -> QuerySet[Membership]:
    """The memberships ``bill`` applies to."""
    memberships = billable_memberships(bill.cluster_id)
    if bill.user_id is not None:
        return memberships.filter(user_id=bill.user_id)
    return memberships.filter(joined_at__lte=bill.created_at)


def _audience_of_outer_bill(prefix: str = "") -> Q:
    """Memberships that the bill of the enclosing query (``OuterRef``) applies to."""
    p = prefix

    def outer(name: str) -> OuterRef:
        return OuterRef(OuterRef(name)) if p else OuterRef(name)

    return Q(**{f"{p}cluster_id": outer("cluster_id"), f"{p}active": True, f"{p}is_resident": True}) & (
        Q(IsNull(outer("user_id"), True), **{f"{p}joined_at__lte": outer("created_at")})
        | Q(**{f"{p}user_id": outer("user_id")})
    )


def bills_applying_to(membership: Membership) -> QuerySet[Bill]:
    """The bills that apply to one member: estate-wide ones issued since they joined,
    and their own."""
    if not (membership.active and membership.is_resident):
        return Bill.objects.none()
    return Bill.objects.filter(cluster_id=membership.cluster_id).filter(
        Q(user_id=membership.user_id) | Q(user__isnull=True, created_at__gte=membership.joined_at)
    )


def bill_applies_to(*, bill: Bill, user: User) -> bool:
    return bill_audience(bill).filter(user_id=user.pk).exists()
