"""Every row lock the services take, and the one order they take them in.

A transaction that needs several of these takes them top to bottom, never back up,
so two transactions never wait for each other in a circle:

1. a dispute, ``FOR UPDATE`` — its resolution (:func:`lock_dispute`);
2. bills — ``FOR UPDATE`` to change one (cancel, edit: :func:`lock_bill`; a recount:
   several, by primary key, :func:`lock_bills`), ``FOR SHARE`` while one member's facts
   of it change — a payment, a refund, a dispute's resolution (:func:`share_bill`,
   :func:`share_bill_and_membership`, :func:`share_bill_and_member`). Shared locks let
   the residents of an estate pay the same bill at once, while a cancellation or a
   change of terms waits for them;
3. the estate row, ``FOR NO KEY UPDATE`` — whatever moves members in or out of bills'
   audiences or counts them: membership changes, a recount (:func:`lock_estate`,
   :func:`lock_estates_of_bills`), and bill creation, whose bill-number UPDATE of the
   same row (``levy.billing.issuing.take_bill_number``) is the lock;
4. a membership — ``FOR SHARE`` with its bill (2), so it cannot leave the audience
   while its facts change; ``FOR UPDATE`` by a membership change
   (:func:`lock_membership`);
5. the member's wallet, ``FOR UPDATE`` — the per-member lock of money: payments,
   disputes, credits and refunds of one member are serialised, different members never
   wait for each other (``levy.wallets.ledger.lock_wallet``, re-exported here; a credit
   takes it alone).

A bill schedule (``levy.billing.schedules``) is locked before the bill it issues, so it
comes before (2). Counter rows (``levy.billing.counters``) are written last, by
conditional UPDATEs. SQLite, the demo's database, runs one writer at a time: the shared
locks are skipped there. See docs/decisions/0003-ledger-and-locking.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from levy.billing.models import Bill, BillDispute
from levy.common.db import lock_row_for_share, refresh_for_share
from levy.estates.models import Cluster, Membership
from levy.wallets.ledger import lock_wallet, lock_wallet_by_id
from levy.wallets.models import Wallet

if TYPE_CHECKING:
    from levy.accounts.models import User

__all__ = [
    "lock_bill",
    "lock_bills",
    "lock_dispute",
    "lock_estate",
    "lock_estates_of_bills",
    "lock_member_action",
    "lock_membership",
    "lock_wallet",
    "lock_wallet_by_id",
    "share_bill",
    "share_bill_and_member",
    "share_bill_and_membership",
    "share_membership",
]


# 1 -------------------------------------------------------------------------------------


def lock_dispute(*, dispute_id: Any, cluster_id: Any) -> BillDispute:
    return BillDispute.objects.select_for_update().filter(pk=dispute_id, cluster_id=cluster_id).get()


# 2 -------------------------------------------------------------------------------------


def lock_bill(*, bill_id: Any, cluster_id: Any | None = None) -> Bill:
    """The bill, reloaded and locked ``FOR UPDATE`` (within the estate, when given)."""
    bills = Bill.objects.select_for_update().filter(pk=bill_id)
    if cluster_id is not None:
        bills = bills.filter(cluster_id=cluster_id)
    return bills.get()


def lock_bills(bill_ids: Sequence[Any]) -> None:
    """Several bills ``FOR UPDATE``, by primary key."""
    list(Bill.objects.select_for_update().filter(pk__in=bill_ids).order_by("pk").values_list("pk", flat=True))


def share_bill(bill_id: Any) -> None:
    lock_row_for_share(Bill, bill_id)


def share_bill_and_membership(bill: Bill, membership: Membership) -> None:
    """Reload ``bill`` and hold it and the member's row ``FOR SHARE`` (2 and 4, one
    statement): the start of every action of a member on a bill."""
    refresh_for_share(bill, also=(Membership, membership.pk))


def share_bill_and_member(*, bill_id: Any, cluster_id: Any, user_id: Any) -> Bill:
    """A fact of someone else's changing (a refund of their payment): the bill, reloaded,
    and their membership row, ``FOR SHARE`` (2 and 4, one statement). The person must
    be a member of the estate (a wallet's owner always is)."""
    bill = Bill(pk=bill_id)
    refresh_for_share(bill, also=(Membership, {"cluster": cluster_id, "user": user_id}))
    return bill


# 3 -------------------------------------------------------------------------------------


def lock_estate(cluster_id: Any) -> None:
    Cluster.objects.select_for_update(no_key=True).filter(pk=cluster_id).values_list("pk").get()


def lock_estates_of_bills(bill_ids: Sequence[Any]) -> None:
    clusters = Bill.objects.filter(pk__in=bill_ids).values("cluster_id")
    list(Cluster.objects.select_for_update(no_key=True).filter(pk__in=clusters).order_by("pk").values("pk"))


# 4 -------------------------------------------------------------------------------------


def share_membership(membership_id: Any) -> None:
    lock_row_for_share(Membership, membership_id)


def lock_membership(*, cluster_id: Any, user_id: Any) -> Membership | None:
    """The person's membership of the estate ``FOR UPDATE``, if they have one."""
    return Membership.objects.select_for_update().filter(cluster_id=cluster_id, user_id=user_id).first()


# 2, 4 and 5 ---------------------------------------------------------------------------------


def lock_member_action(bill: Bill, membership: Membership, *, cluster: Cluster, user: User) -> Wallet:
    """A member's action that may move or decide about their money (pay, dispute): the
    bill and their membership ``FOR SHARE``, then their wallet ``FOR UPDATE``. The bill
    is reloaded; its wallet is returned."""
    share_bill_and_membership(bill, membership)
    bill.cluster = cluster
    return lock_wallet(cluster=cluster, user=user)
