"""Tenancy: the only way into an estate's data.

Every estate-scoped read and write starts from an :class:`EstateAccess`, obtained
from :func:`access_cluster`. It is only ever built for an estate the caller belongs
to (or, for the platform operator, with the operator's narrow permissions), and the
object helpers filter by its cluster, so a cross-estate read is impossible by
construction: another estate's objects raise the same ``NotFoundError`` as objects
that do not exist.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection

from levy.common.db import column, db_value, fetch_one, model_columns, model_from_row, table
from levy.common.errors import NotFoundError, PermissionDeniedError
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import (
    OPERATOR_PERMISSIONS,
    READ_PERMISSIONS,
    Permission,
    permissions_for_role,
)

if TYPE_CHECKING:
    from levy.accounts.models import User


@dataclass(frozen=True)
class EstateAccess:
    """A caller inside one estate: who, where, with which membership and permissions."""

    user: User
    cluster: Cluster
    membership: Membership | None
    permissions: frozenset[Permission] = field(default_factory=frozenset)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def can_read_finances(self) -> bool:
        return bool(self.permissions & READ_PERMISSIONS)

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDeniedError()

    def require_read_finances(self) -> None:
        if not self.can_read_finances():
            raise PermissionDeniedError()

    def require_member(self) -> Membership:
        if self.membership is None:
            raise NotFoundError()
        return self.membership


def parse_uuid(value: object) -> uuid.UUID:
    """A malformed identifier is just an identifier that matches nothing."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFoundError() from None


def access_cluster(user: User, cluster_id: object) -> EstateAccess:
    """The caller's access to an estate, or ``NotFoundError`` if they are not in it."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise NotFoundError()
    pk = parse_uuid(cluster_id)
    # Read with the caller by the bearer-token authentication of this request (one
    # statement for both); taken once, so a later check in the request reads afresh.
    prefetched = user.__dict__.pop(PREFETCHED_MEMBERSHIP, None)
    if prefetched is not None and prefetched[0] == pk:
        membership = prefetched[1]
    else:
        membership = active_membership(user.pk, pk)
    if membership is not None:
        return EstateAccess(
            user=user,
            cluster=membership.cluster,
            membership=membership,
            permissions=permissions_for_role(membership.role),
        )
    if user.is_superuser:
        try:
            cluster = Cluster.objects.get(pk=pk)
        except (Cluster.DoesNotExist, DjangoValidationError):
            raise NotFoundError() from None
        return EstateAccess(user=user, cluster=cluster, membership=None, permissions=OPERATOR_PERMISSIONS)
    raise NotFoundError()


def _membership_join() -> tuple[str, str, str]:
    """(``m`` joined to its cluster ``c``, the condition of one user's active membership
    of one estate — parameters cluster, active — and ``m``'s user column)."""
    m_cluster, m_user, m_active = (column(Membership, n) for n in ("cluster", "user", "active"))
    joined = f"{table(Membership)} m JOIN {table(Cluster)} c ON c.{column(Cluster, 'id')} = m.{m_cluster}"
    return joined, f"m.{m_cluster} = %s AND m.{m_active} = %s", f"m.{m_user}"


@functools.cache
def _active_membership_sql(vendor: str) -> str:
    joined, active_in, user = _membership_join()
    return (
        f"SELECT {model_columns(Membership, 'm')}, {model_columns(Cluster, 'c')} "  # noqa: S608 - identifiers from the models
        f"FROM {joined} WHERE {active_in} AND {user} = %s"
    )


def _membership_from_row(row: Any, start: int) -> Membership:
    membership, after = model_from_row(Membership, row, start)
    membership.cluster = model_from_row(Cluster, row, after)[0]
    return membership


def active_membership(user_id: uuid.UUID, cluster_id: uuid.UUID) -> Membership | None:
    """The user's active membership of the estate, its cluster loaded: one fixed
    statement, since every estate request makes this read (see ``levy.common.db``)."""
    row = fetch_one(
        _active_membership_sql(connection.vendor),
        [db_value(Membership, "cluster", cluster_id), True, db_value(Membership, "user", user_id)],
    )
    return None if row is None else _membership_from_row(row, 0)


# The attribute of a User read by ``user_with_membership``: (estate id, the active
# membership of that estate or None).
PREFETCHED_MEMBERSHIP = "_levy_prefetched_membership"


@functools.cache
def _user_with_membership_sql(vendor: str) -> str:
    from levy.accounts.models import User

    joined, active_in, user = _membership_join()
    u_id = f"u.{column(User, 'id')}"
    return (
        f"SELECT {model_columns(User, 'u')}, {model_columns(Membership, 'm')}, {model_columns(Cluster, 'c')} "  # noqa: S608 - identifiers from the models
        f"FROM {table(User)} u LEFT JOIN ({joined}) ON {user} = {u_id} AND {active_in} WHERE {u_id} = %s"
    )


def user_with_membership(user_id: object, cluster_id: uuid.UUID) -> User | None:
    """The user, and their active membership of the estate with its cluster, in one
    statement (None if there is no such user). The membership (or its absence) rides
    on the user for the request's ``access_cluster``, which would otherwise read it
    with a second statement: every estate request of the API makes both reads."""
    from levy.accounts.models import User

    row = fetch_one(
        _user_with_membership_sql(connection.vendor),
        [db_value(Membership, "cluster", cluster_id), True, db_value(User, "id", user_id)],
    )
    if row is None:
        return None
    user, after = model_from_row(User, row)
    # the membership's id is NULL when the LEFT JOIN found none
    membership = None if row[after] is None else _membership_from_row(row, after)
    user.__dict__[PREFETCHED_MEMBERSHIP] = (cluster_id, membership)
    return user


def has_permission(user: User, cluster: Cluster, permission: Permission) -> bool:
    """May ``user`` do ``permission`` in ``cluster``? The one answer to that question."""
    try:
        access = access_cluster(user, cluster.pk)
    except NotFoundError:
        return False
    return access.can(permission)


def require_permission(user: User, cluster: Cluster, permission: Permission) -> EstateAccess:
    access = access_cluster(user, cluster.pk)
    access.require(permission)
    return access
