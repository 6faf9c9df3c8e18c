"""A member's life in an estate: added (one by one here, by file in ``imports``),
changed, leaving, their sign-in unlocked. Each moves the member in or out of bills'
audiences (the billing counters, under the estate's lock), gives them a wallet, and
tells them: so this package sits above billing, wallets and notifications, and
``levy.estates`` (the estate, its memberships and the access to it) below them all."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from levy.accounts.models import User
from levy.accounts.signin_guard import account_unlock
from levy.accounts.tasks import send_invitation, send_invitations
from levy.audit.services import audit_record
from levy.billing import locks
from levy.billing.counters import MemberState, counters_move_member
from levy.common.errors import NotFoundError, PermissionDeniedError, RuleViolation, ValidationError
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import MembersPermissions, Role, default_is_resident
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import notify
from levy.wallets.services import wallet_ensure

VALID_ROLES = set(Role.values)


def _validate_role(role: str) -> str:
    if role not in VALID_ROLES:
        raise ValidationError(fields={"role": [f"Choose one of: {', '.join(sorted(VALID_ROLES))}."]})
    return role


def lock_estate_audiences(cluster: Cluster) -> None:
    """Membership changes move members in and out of bill audiences: they lock the
    estate row, as bill creation does (its reference sequence), so a bill's audience
    count at issue time and a membership change never interleave."""
    locks.lock_estate(cluster.pk)


def member_add(
    *,
    access: EstateAccess,
    email: str,
    name: str = "",
    role: str = Role.RESIDENT,
    is_resident: bool | None = None,
    password: str | None = None,
    origin: Origin = Origin(),
) -> Membership:
    """Add a person to the estate (creating the user if new), with a wallet.

    Adding someone whose membership was deactivated reactivates it from now: they owe
    estate-wide bills issued from this moment on, not those of the time they were away.
    """
    access.require(MembersPermissions.ManageMembers)
    _validate_role(role)
    email = (email or "").strip().lower()
    if not email or "@" not in email or len(email) > 254:
        raise ValidationError(fields={"email": ["Enter a valid email address."]})
    resident = default_is_resident(role) if is_resident is None else bool(is_resident)
    cluster = access.cluster
    with transaction.atomic():
        lock_estate_audiences(cluster)
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=password or None, name=(name or "").strip())
        membership = locks.lock_membership(cluster_id=cluster.pk, user_id=user.pk)
        if membership is not None and membership.active:
            raise ValidationError(fields={"email": ["This person is already a member of the estate."]})
        before = MemberState.of(membership) if membership is not None else None
        now = timezone.now()
        if membership is None:
            try:
                with transaction.atomic():
                    membership = Membership.objects.create(
                        cluster=cluster, user=user, role=role, is_resident=resident, joined_at=now
                    )
            except IntegrityError:
                raise ValidationError(fields={"email": ["This person is already a member of the estate."]}) from None
        else:
            membership.role = role
            membership.is_resident = resident
            membership.active = True
            membership.deactivated_at = None
            membership.joined_at = now
            membership.save(update_fields=["role", "is_resident", "active", "deactivated_at", "joined_at"])
        counters_move_member(before, MemberState.of(membership))
        wallet_ensure(cluster=cluster, user=user)
        audit_record(
            action="member.add",
            target=membership,
            actor=access.user,
            cluster=cluster,
            origin=origin,
            data={"email": email, "role": role, "is_resident": resident},
        )
        if user.is_active and not user.has_usable_password():
            _invite_after_commit(user, cluster, access.user)
        notify_added(
            cluster=cluster,
            user_ids=[membership.user_id],
            role=membership.role,
            event_key=f"membership-added:{membership.pk}:{membership.joined_at.isoformat()}",
        )
    membership.user = user
    return membership


def _invite_after_commit(user: User, cluster: Cluster, inviter: User) -> None:
    """Someone added without a password gets an email to choose one (levy.accounts.invitations),
    once the membership is committed."""
    args = (str(user.pk), cluster.name, inviter.get_full_name() if inviter.pk else "Levy")
    transaction.on_commit(lambda: send_invitation.delay(*args), robust=True)


# People per invitation task of an import.
INVITATIONS_PER_TASK = 500


def invite_many_after_commit(user_ids: list[Any], cluster: Cluster, inviter: User | None) -> None:
    """Those of ``user_ids`` who cannot sign in yet get their invitation email once the
    transaction that added them commits, a few hundred per task (a CSV import)."""
    invited_by = inviter.get_full_name() if inviter is not None and inviter.pk else "Levy"
    for start in range(0, len(user_ids), INVITATIONS_PER_TASK):
        batch = [str(pk) for pk in user_ids[start : start + INVITATIONS_PER_TASK]]
        transaction.on_commit(
            lambda batch=batch: send_invitations.delay(batch, cluster.name, invited_by),  # type: ignore[misc]
            robust=True,
        )


def notify_added(*, cluster: Cluster, user_ids: list[Any], role: str | None, event_key: str) -> None:
    """The people added learn it (and how to leave), in their inbox and by email: nobody
    is made a member of an estate without being told. Call it in the transaction that
    adds them; ``role`` is named in the message when all of them have it."""
    notify(
        event=NotificationEvents.MEMBERSHIP_ADDED,
        cluster=cluster,
        recipients=Recipients.users(*user_ids),
        context={
            "cluster_id": str(cluster.pk),
            "cluster_name": cluster.name,
            "as_role": f" as {Role(role).label.lower()}" if role else "",
        },
        event_key=event_key,
    )


def member_leave(*, access: EstateAccess, origin: Origin = Origin()) -> Membership:
    """A member leaves the estate: their membership is deactivated (as an admin's
    deactivation would), unless they are its last admin. Their wallet and ledger stay."""
    with transaction.atomic():
        lock_estate_audiences(access.cluster)
        locked = locks.lock_membership(cluster_id=access.cluster.pk, user_id=access.user.pk)
        if locked is None:
            raise NotFoundError()
        refusal = last_admin_refusal(membership=locked, role=None, active=False)
        if refusal is not None:
            raise refusal
        before = MemberState.of(locked)
        locked.active = False
        locked.deactivated_at = timezone.now()
        locked.save(update_fields=["active", "deactivated_at"])
        counters_move_member(before, MemberState.of(locked))
        audit_record(
            action="member.leave",
            target=locked,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"role": locked.role},
        )
    return locked


def last_admin_refusal(*, membership: Membership, role: str | None, active: bool | None) -> RuleViolation | None:
    """The refusal when a change would leave the estate without an active admin:
    ``membership`` (locked, with the estate row locked too) is an active admin, the
    change demotes or deactivates it, and no other active admin remains."""
    if membership.role != Role.ADMIN or not membership.active:
        return None
    demoted = role is not None and role != Role.ADMIN
    if not demoted and active is not False:
        return None
    others = (
        Membership.objects.filter(cluster_id=membership.cluster_id, role=Role.ADMIN, active=True)
        .exclude(pk=membership.pk)
        .exists()
    )
    if others:
        return None
    return RuleViolation("The estate would have no admin left. Make another member admin first.", code="last_admin")


def member_update(
    *,
    access: EstateAccess,
    membership: Membership,
    role: str | None = None,
    is_resident: bool | None = None,
    active: bool | None = None,
    origin: Origin = Origin(),
) -> Membership:
    """Change a member's role, residency, or deactivate them."""
    access.require(MembersPermissions.ManageMembers)
    if membership.cluster_id != access.cluster.pk:
        raise PermissionDeniedError()
    if active is True and not membership.active:
        raise ValidationError(fields={"active": ["Add the person again to reactivate their membership."]})
    changes: dict[str, object] = {}
    with transaction.atomic():
        lock_estate_audiences(access.cluster)
        locked = locks.lock_membership(cluster_id=membership.cluster_id, user_id=membership.user_id)
        if locked is None:
            raise NotFoundError()
        refusal = last_admin_refusal(membership=locked, role=role, active=active)
        if refusal is not None:
            raise refusal
        before = MemberState.of(locked)
        if role is not None and role != locked.role:
            locked.role = _validate_role(role)
            changes["role"] = role
        if is_resident is not None and is_resident != locked.is_resident:
            locked.is_resident = bool(is_resident)
            changes["is_resident"] = bool(is_resident)
        if active is False and locked.active:
            if locked.user_id == access.user.pk:
                raise ValidationError(fields={"active": ["You cannot deactivate your own membership."]})
            locked.active = False
            locked.deactivated_at = timezone.now()
            changes["active"] = False
        if changes:
            locked.save()
            counters_move_member(before, MemberState.of(locked))
            audit_record(
                action="member.update",
                target=locked,
                actor=access.user,
                cluster=access.cluster,
                origin=origin,
                data=changes,
            )
    return locked


def member_sign_in_unlock(*, access: EstateAccess, membership: Membership, origin: Origin = Origin()) -> bool:
    """An estate admin lifts the sign-in lock of one of the estate's members (too many
    wrong passwords). True when there was a lock or failures to clear."""
    access.require(MembersPermissions.ManageMembers)
    if membership.cluster_id != access.cluster.pk:
        raise PermissionDeniedError()
    return account_unlock(user=membership.user, actor=access.user, origin=origin, cluster=access.cluster)
