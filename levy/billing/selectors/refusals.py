"""Why a member may not acknowledge or pay a bill, as an application error (or None)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from levy.billing.models import Bill
from levy.billing.selectors.audience import bill_applies_to
from levy.billing.selectors.base import estate_today
from levy.billing.selectors.facts import read_member_facts
from levy.billing.status import MemberBillFacts
from levy.common.errors import NotFoundError, RuleViolation

if TYPE_CHECKING:
    from levy.accounts.models import User


def bill_acknowledge_refusal(*, bill: Bill, user: User) -> RuleViolation | NotFoundError | None:
    """Why ``user`` may not acknowledge ``bill`` — or ``None`` if they may."""
    if not bill_applies_to(bill=bill, user=user):
        return NotFoundError()
    if bill.cancelled_at is not None:
        return RuleViolation("This bill has been cancelled.", code="bill_cancelled")
    return None


def bill_payment_refusal(
    *, bill: Bill, user: User, today: datetime.date | None = None
) -> RuleViolation | NotFoundError | None:
    """Why ``user`` may not pay ``bill`` now — or ``None`` if they may. The order is
    the order the checks are reported in."""
    read = read_member_facts(bill=bill, user=user)
    if not read["applies"]:
        return NotFoundError()
    facts = MemberBillFacts(
        cancelled=bill.cancelled_at is not None,
        paid=read["paid"],
        waived=read["waived"],
        disputed=read["disputed"],
        past_due=(today or estate_today()) > bill.due_date,
        acknowledged=read["acknowledged"],
    )
    if facts.cancelled:
        return RuleViolation("This bill has been cancelled.", code="bill_cancelled")
    if facts.paid:
        return RuleViolation("You have already paid this bill.", code="bill_already_paid")
    if facts.waived:
        return RuleViolation("This bill was waived for you.", code="bill_waived")
    if facts.disputed:
        return RuleViolation("You have an open dispute on this bill.", code="bill_disputed")
    if not facts.acknowledged:
        return RuleViolation("Acknowledge the bill before paying it.", code="bill_not_acknowledged")
    if facts.past_due and not bill.allow_payment_after_due:
        return RuleViolation(
            "This bill is past its due date and no longer accepts payment.", code="payment_after_due_not_allowed"
        )
    return None
