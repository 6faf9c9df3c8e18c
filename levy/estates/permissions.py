"""Permissions are named constants; a role is a set of them.

Roles live on memberships (per estate), never on the user, so one person can be an
admin in one estate and a resident in another.
"""

from __future__ import annotations

from enum import StrEnum

from django.db import models


class PaymentsPermissions(StrEnum):
    ManageBill = "payments.manage_bill"
    ManageWallet = "payments.manage_wallet"
    ManageTransaction = "payments.manage_transaction"
    ViewPayments = "payments.view_payments"


class MembersPermissions(StrEnum):
    ManageMembers = "members.manage_members"


class EstatePermissions(StrEnum):
    # The estate's own settings, e.g. its payment provider account and credentials.
    ManageProviders = "estate.manage_providers"


Permission = PaymentsPermissions | MembersPermissions | EstatePermissions


class Role(models.TextChoices):
    ADMIN = "admin", "Estate admin"
    TREASURER = "treasurer", "Treasurer"
    AUDITOR = "auditor", "Auditor"
    RESIDENT = "resident", "Resident"


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.ADMIN: frozenset([*PaymentsPermissions, MembersPermissions.ManageMembers, EstatePermissions.ManageProviders]),
    Role.TREASURER: frozenset(PaymentsPermissions),
    Role.AUDITOR: frozenset([PaymentsPermissions.ViewPayments]),
    Role.RESIDENT: frozenset(),
}

# What the platform operator (a superuser) may do in any estate: appoint members,
# so that a new estate can get its first admin. Nothing financial.
OPERATOR_PERMISSIONS: frozenset[Permission] = frozenset([MembersPermissions.ManageMembers])

# Any of these lets a member read the estate's financial views.
READ_PERMISSIONS: frozenset[Permission] = frozenset(
    [
        PaymentsPermissions.ViewPayments,
        PaymentsPermissions.ManageBill,
        PaymentsPermissions.ManageWallet,
        PaymentsPermissions.ManageTransaction,
    ]
)


def permissions_for_role(role: str) -> frozenset[Permission]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def roles_with(permission: Permission) -> list[str]:
    """The roles that hold ``permission``, for set-based recipient queries."""
    return [role for role, perms in ROLE_PERMISSIONS.items() if permission in perms]


def default_is_resident(role: str) -> bool:
    """Residents live in the estate by default; staff roles do not (changeable)."""
    return role == Role.RESIDENT
