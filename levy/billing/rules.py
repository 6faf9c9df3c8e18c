"""What a member may do with a bill, decided from their facts: every refusal in one place.

:class:`MemberFacts` is what is stored about one member and one bill (and whether the
bill applies to them); :func:`read_member_facts` reads it in one fixed statement, and
``MemberFacts.on(bill)`` turns it into the facts a status is derived from — the one
place that record is built. The refusals are pure functions of a bill and a
``MemberFacts``: a service (under its locks), a selector and the ``Bill`` model's own
methods ask the same question the same way.

This module imports no billing model — it finds the two it reads in the app registry
when its statement is first built — so ``levy.billing.models`` imports it, and
``Bill``'s methods are thin calls into it without an import circle.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import connection

from levy.billing.status import DisputeStatus, MemberBillFacts, derive_status, estate_today
from levy.common.db import column, db_value, fetch_one, field_value, table
from levy.common.errors import ApplicationError, NotFoundError, RuleViolation
from levy.estates.models import Membership
from levy.wallets.models import Transaction, TransactionStatus, TransactionType

if TYPE_CHECKING:
    from levy.accounts.models import User
    from levy.billing.models import Bill
    from levy.billing.status import BillStatus

# The "paid" fact: the member has a *live* payment of the bill — a completed payment
# entry that no refund reopening the bill reverses (a refund made while the bill was
# live; one of a cancelled bill's payment leaves it paid). At most one is live, by the
# unique (bill, payer, settlement) constraint and the number a payment takes
# (docs/decisions/0028-refunds-of-live-bills.md). Every form of the fact — the ORM
# expressions of ``levy.billing.selectors.facts``, the fixed statements (through
# :func:`live_payment_sql`), the recipients of a notification — is built from these.
COMPLETED_PAYMENT: dict[str, str] = {"type": TransactionType.BILL_PAYMENT, "status": TransactionStatus.COMPLETED}
REOPENING_REFUND: dict[str, Any] = {"type": TransactionType.REFUND, "reopens_bill": True}
LIVE_PAYMENT_PARAMS: dict[str, Any] = {
    "payment": TransactionType.BILL_PAYMENT.value,
    "completed": TransactionStatus.COMPLETED.value,
    "reopens": True,
}


def live_payment_sql(alias: str, *, named: bool = True) -> str:
    """The "paid" fact in SQL: the ledger row ``alias`` is a live payment — a completed
    payment (:func:`completed_payment_sql`) that no reopening refund reverses
    (:func:`not_reopened_sql`). Its values are the parameters of
    ``LIVE_PAYMENT_PARAMS``, by name (``%(payment)s``, …) or, with ``named=False``,
    three ``%s`` in that order."""
    return f"{completed_payment_sql(alias, named=named)} AND {not_reopened_sql(alias, named=named)}"


def completed_payment_sql(alias: str, *, named: bool = True) -> str:
    """The ledger row ``alias`` is a completed bill payment (parameters ``payment`` and
    ``completed``)."""
    t = Transaction
    payment, completed = ("%(payment)s", "%(completed)s") if named else ("%s", "%s")
    return f"{alias}.{column(t, 'type')} = {payment} AND {alias}.{column(t, 'status')} = {completed}"


def not_reopened_sql(alias: str, *, named: bool = True) -> str:
    """No refund that reopened the bill reverses the ledger row ``alias`` (parameter
    ``reopens``)."""
    t = Transaction
    reopens = "%(reopens)s" if named else "%s"
    return (
        f"NOT EXISTS (SELECT 1 FROM {table(t)} reopening "  # noqa: S608 - identifiers from the models
        f"WHERE reopening.{column(t, 'reverses')} = {alias}.{column(t, 'id')} "
        f"AND reopening.{column(t, 'reopens_bill')} = {reopens})"
    )


@dataclass(frozen=True)
class MemberFacts:
    """What is stored about one member and one bill."""

    applies: bool  # the bill applies to the member (``bill_audience``)
    paid: bool
    waived: bool  # their dispute was upheld
    disputed: bool  # they have an open dispute
    acknowledged: bool
    # Their completed payments of the bill, live or refunded: the number the next one
    # takes (``Transaction.settlement``).
    payments: int = 0
    # When they acknowledged it, and when they made their live payment (what a page of
    # the bill shows: ``member_bills`` annotates the same).
    acknowledged_at: datetime.datetime | None = None
    paid_at: datetime.datetime | None = None

    def on(self, bill: Bill, today: datetime.date | None = None) -> MemberBillFacts:
        """The facts a status is derived from, on ``today`` (the estate's today)."""
        return self.on_terms(cancelled=bill.cancelled_at is not None, due_date=bill.due_date, today=today)

    def on_terms(
        self, *, cancelled: bool, due_date: datetime.date, today: datetime.date | None = None
    ) -> MemberBillFacts:
        """:meth:`on` from the two terms of the bill it reads (when only they were read)."""
        return MemberBillFacts(
            cancelled=cancelled,
            paid=self.paid,
            waived=self.waived,
            disputed=self.disputed,
            past_due=(today or estate_today()) > due_date,
            acknowledged=self.acknowledged,
        )

    def status(self, bill: Bill, today: datetime.date | None = None) -> BillStatus:
        return derive_status(self.on(bill, today))


@functools.cache
def _read_facts_sql(vendor: str, estate_wide: bool) -> str:
    m, t = Membership, Transaction
    d, a = apps.get_model("billing", "BillDispute"), apps.get_model("billing", "BillAcknowledgement")
    # The audience rule of ``bill_audience``: active resident members; for an
    # estate-wide bill those who joined by its creation, else the bill's own member.
    audience = f"{column(m, 'joined_at')} <= %(created)s" if estate_wide else f"{column(m, 'user')} = %(bill_user)s"
    return (
        "SELECT "  # noqa: S608 - identifiers from the models, values are parameters
        f"EXISTS (SELECT 1 FROM {table(m)} WHERE {column(m, 'cluster')} = %(cluster)s "
        f"AND {column(m, 'user')} = %(user)s AND {column(m, 'active')} = %(true)s "
        f"AND {column(m, 'is_resident')} = %(true)s AND {audience}), "
        "pay.live > 0, "
        f"EXISTS (SELECT 1 FROM {table(d)} WHERE {column(d, 'bill')} = %(bill)s AND {column(d, 'user')} = %(user)s "
        f"AND {column(d, 'status')} = %(upheld)s), "
        f"EXISTS (SELECT 1 FROM {table(d)} WHERE {column(d, 'bill')} = %(bill)s AND {column(d, 'user')} = %(user)s "
        f"AND {column(d, 'status')} = %(open)s), "
        # At most one acknowledgement (unique per bill and member).
        f"(SELECT {column(a, 'acknowledged_at')} FROM {table(a)} WHERE {column(a, 'bill')} = %(bill)s "
        f"AND {column(a, 'user')} = %(user)s), "
        # The member's completed payments of the bill, how many of them are live (at most
        # one) and when that one was made, from one pass over their few index entries:
        # cheaper to plan than an EXISTS and a count.
        "pay.payments, pay.paid_at "
        f"FROM (SELECT count(*) AS payments, count(*) FILTER (WHERE {not_reopened_sql('p')}) AS live, "
        f"max(p.{column(t, 'created_at')}) FILTER (WHERE {not_reopened_sql('p')}) AS paid_at "
        f"FROM {table(t)} p WHERE p.{column(t, 'bill')} = %(bill)s AND p.{column(t, 'payer')} = %(user)s "
        f"AND {completed_payment_sql('p')}) pay"
    )


def read_member_facts(*, bill: Bill, user: User | None = None, user_id: Any = None) -> MemberFacts:
    """Whether the bill applies to the member (``user``, or the user of ``user_id``),
    and the member's stored facts, in one fixed statement (the same rules as
    ``bill_audience`` and the fact expressions of ``levy.billing.selectors.facts``;
    tests compare the two forms)."""
    model: Any = type(bill)
    params = {
        "cluster": db_value(Membership, "cluster", bill.cluster_id),
        "user": db_value(Membership, "user", user.pk if user is not None else user_id),
        "bill": db_value(model, "id", bill.pk),
        "created": db_value(model, "created_at", bill.created_at),
        "bill_user": db_value(model, "user", bill.user_id),
        "true": True,
        **LIVE_PAYMENT_PARAMS,
        "upheld": DisputeStatus.UPHELD.value,
        "open": DisputeStatus.OPEN.value,
    }
    row = fetch_one(_read_facts_sql(connection.vendor, bill.user_id is None), params)
    applies, paid, waived, disputed, acknowledged_at, payments, paid_at = row
    acknowledgement = apps.get_model("billing", "BillAcknowledgement")
    return MemberFacts(
        applies=bool(applies),
        paid=bool(paid),
        waived=bool(waived),
        disputed=bool(disputed),
        acknowledged=acknowledged_at is not None,
        payments=int(payments),
        acknowledged_at=field_value(acknowledgement, "acknowledged_at", acknowledged_at),
        paid_at=field_value(Transaction, "created_at", paid_at),
    )


# --- refusals: why not, or None -------------------------------------------------------------


def acknowledge_refusal(bill: Bill, facts: MemberFacts) -> ApplicationError | None:
    """Why the member may not acknowledge ``bill`` (also the first checks of a dispute)."""
    if not facts.applies:
        return NotFoundError()
    if bill.cancelled_at is not None:
        return RuleViolation("This bill has been cancelled.", code="bill_cancelled")
    return None


def dispute_refusal(bill: Bill, facts: MemberFacts) -> ApplicationError | None:
    """Why the member may not dispute ``bill``."""
    refusal = acknowledge_refusal(bill, facts)
    if refusal is not None:
        return refusal
    if facts.paid:
        return RuleViolation("You have already paid this bill.", code="bill_already_paid")
    if facts.waived:
        return RuleViolation("This bill was already waived for you.", code="bill_waived")
    if facts.disputed:
        return RuleViolation("You already have an open dispute on this bill.", code="dispute_already_open")
    return None


def payment_refusal(bill: Bill, facts: MemberFacts, today: datetime.date | None = None) -> ApplicationError | None:
    """Why the member may not pay ``bill`` now. The order is the order the checks are
    reported in."""
    if not facts.applies:
        return NotFoundError()
    status_facts = facts.on(bill, today)
    if status_facts.cancelled:
        return RuleViolation("This bill has been cancelled.", code="bill_cancelled")
    if status_facts.paid:
        return RuleViolation("You have already paid this bill.", code="bill_already_paid")
    if status_facts.waived:
        return RuleViolation("This bill was waived for you.", code="bill_waived")
    if status_facts.disputed:
        return RuleViolation("You have an open dispute on this bill.", code="bill_disputed")
    if not status_facts.acknowledged:
        return RuleViolation("Acknowledge the bill before paying it.", code="bill_not_acknowledged")
    if status_facts.past_due and not bill.allow_payment_after_due:
        return RuleViolation(
            "This bill is past its due date and no longer accepts payment.", code="payment_after_due_not_allowed"
        )
    return None
