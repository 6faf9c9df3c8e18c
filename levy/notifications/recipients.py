"""Who receives an event, described as data so it can wait in the outbox and be
resolved into a set-based query by the worker that fans it out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from levy.estates.models import Membership
from levy.estates.permissions import PaymentsPermissions, roles_with

BILL_KINDS = frozenset({"bill_audience", "bill_unpaid", "bill_owing_undisputed", "bill_late_fees"})
KINDS = frozenset({"users", "permission_holders", *BILL_KINDS})
# A list of at most this many people counts as few recipients (see ``is_few``).
FEW_USERS = 50


@dataclass(frozen=True)
class Recipients:
    kind: str
    bill_id: str | None = None
    permission: str | None = None
    user_ids: tuple[str, ...] = field(default_factory=tuple)

    # --- constructors ---------------------------------------------------------------

    @classmethod
    def users(cls, *user_ids: Any) -> Recipients:
        return cls(kind="users", user_ids=tuple(str(u) for u in user_ids))

    @classmethod
    def bill_audience(cls, bill: Any) -> Recipients:
        """Every member the bill applies to."""
        return cls(kind="bill_audience", bill_id=str(bill.pk))

    @classmethod
    def bill_unpaid(cls, bill: Any) -> Recipients:
        """Members the bill applies to who have not paid it."""
        return cls(kind="bill_unpaid", bill_id=str(bill.pk))

    @classmethod
    def bill_owing_undisputed(cls, bill: Any) -> Recipients:
        """Members who still owe the bill and have no open dispute on it (reminders)."""
        return cls(kind="bill_owing_undisputed", bill_id=str(bill.pk))

    @classmethod
    def bill_late_fees(cls, bill: Any) -> Recipients:
        """Members holding a late fee of the bill (levy.billing.late_fees): one intent
        for all of a bill's late fees, resolved by the worker in one query."""
        return cls(kind="bill_late_fees", bill_id=str(bill.pk))

    @classmethod
    def permission_holders(cls, permission: Any) -> Recipients:
        """Active members of the estate whose role holds ``permission``."""
        return cls(kind="permission_holders", permission=str(permission))

    # --- storage --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bill_id": self.bill_id,
            "permission": self.permission,
            "user_ids": list(self.user_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipients:
        return cls(
            kind=data["kind"],
            bill_id=data.get("bill_id"),
            permission=data.get("permission"),
            user_ids=tuple(data.get("user_ids") or ()),
        )

    # --- resolution -----------------------------------------------------------------

    def is_few(self) -> bool:
        """Whether the recipients are a handful of people whatever the estate's size — a
        list of a few users, or the staff holding a permission — so that the intent can
        be delivered together with others (``deliver_pending``) rather than fanned out on
        its own. Bill audiences grow with the estate and are never few."""
        if self.kind == "permission_holders":
            return True
        return self.kind == "users" and len(self.user_ids) <= FEW_USERS

    def few_targets(self) -> tuple[list[str], list[str]]:
        """For few recipients, what ``memberships`` filters on as data: (user ids, roles).
        The members of the intent's estate with one of those user ids, and its active
        members with one of those roles — the set-based delivery of many intents at once
        restates ``memberships`` with these (tests compare the two)."""
        if self.kind == "users":
            return list(self.user_ids), []
        if self.kind == "permission_holders":
            return [], [str(role) for role in roles_with(PaymentsPermissions(str(self.permission)))]
        raise ValueError(f"not a kind of few recipients: {self.kind}")

    def memberships(self, cluster_id: Any) -> QuerySet[Membership]:
        """The recipients as a queryset of memberships (resolved now, in the database)."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown recipients kind: {self.kind}")
        if self.kind == "users":
            return Membership.objects.filter(cluster_id=cluster_id, user_id__in=list(self.user_ids))
        if self.kind == "permission_holders":
            perm = PaymentsPermissions(str(self.permission))
            return Membership.objects.filter(cluster_id=cluster_id, active=True, role__in=roles_with(perm))
        return _bill_resolver[0](self.kind, str(self.bill_id), cluster_id)


# Whom a kind about one bill (``BILL_KINDS``) means is billing's rule: the bill's
# audience, the "paid" fact, disputes, late fees. Billing registers the function that
# resolves them (``levy.billing.recipients.bill_recipients``, from its app's ``ready``);
# notifications sits below billing and never imports it.
BillResolver = Callable[[str, str, Any], QuerySet[Membership]]
_bill_resolver: list[BillResolver] = []


def register_bill_resolver(resolve: BillResolver) -> None:
    """``resolve(kind, bill_id, cluster_id)``: the memberships ``kind`` means for that bill."""
    _bill_resolver[:] = [resolve]
