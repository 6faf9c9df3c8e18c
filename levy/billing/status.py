"""A bill's status for one member, derived — never stored.

The rule is written once, as an ordered list of (status, fact). The Python
derivation (one bill, :func:`derive_status`) and the SQL derivation (annotations for
lists, filters and counts, :func:`status_case`) are both generated from that list,
and ``tests/billing/test_status.py`` proves they agree on every combination of facts.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import models
from django.db.models import Case, Expression, Q, Value, When
from django.utils import timezone


def estate_today() -> datetime.date:
    """The estate calendar's date (settings.TIME_ZONE); the one clock for due dates."""
    return timezone.localdate()


class BillStatus(models.TextChoices):
    CANCELLED = "cancelled", "Cancelled"
    PAID = "paid", "Paid"
    WAIVED = "waived", "Waived"
    DISPUTED = "disputed", "Disputed"
    OVERDUE = "overdue", "Overdue"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    PENDING = "pending", "Pending"


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open"
    UPHELD = "upheld", "Upheld"
    REJECTED = "rejected", "Rejected"


@dataclass(frozen=True)
class MemberBillFacts:
    """The stored facts a status is derived from, for one bill and one member."""

    cancelled: bool  # the bill has been cancelled
    paid: bool  # the member has a completed payment for the bill
    waived: bool  # the member's dispute was upheld
    disputed: bool  # the member has an open dispute
    past_due: bool  # today is after the due date
    acknowledged: bool  # the member has acknowledged the bill


# Precedence, highest first. The fact names are the field names above and the names
# of the boolean annotations the SQL side builds.
STATUS_RULES: tuple[tuple[BillStatus, str], ...] = (
    (BillStatus.CANCELLED, "cancelled"),
    (BillStatus.PAID, "paid"),
    (BillStatus.WAIVED, "waived"),
    (BillStatus.DISPUTED, "disputed"),
    (BillStatus.OVERDUE, "past_due"),
    (BillStatus.ACKNOWLEDGED, "acknowledged"),
)
FALLBACK_STATUS = BillStatus.PENDING

# Statuses in which the member still owes the bill.
OWING_STATUSES = frozenset({BillStatus.PENDING, BillStatus.ACKNOWLEDGED, BillStatus.OVERDUE, BillStatus.DISPUTED})


def derive_status(facts: MemberBillFacts) -> BillStatus:
    for status, fact in STATUS_RULES:
        if getattr(facts, fact):
            return status
    return FALLBACK_STATUS


def can_pay(facts: MemberBillFacts, *, allow_payment_after_due: bool) -> bool:
    """Whether the member may pay now (the Python side of ``member_bills``' ``can_pay``)."""
    return (
        facts.acknowledged
        and not (facts.cancelled or facts.paid or facts.waived or facts.disputed)
        and (allow_payment_after_due or not facts.past_due)
    )


# The statuses as parameters of :func:`status_sql` (``%(status_paid)s``, …).
STATUS_SQL_PARAMS: dict[str, str] = {f"status_{status.value}": status.value for status in BillStatus}


def status_sql(fact_sql: Mapping[str, str]) -> str:
    """The same derivation as a ``CASE`` for a fixed statement: ``fact_sql`` maps each
    fact name to a boolean SQL expression; the statuses are the named parameters of
    ``STATUS_SQL_PARAMS``."""
    missing = {fact for _, fact in STATUS_RULES} - fact_sql.keys()
    if missing:
        raise ValueError(f"missing facts: {sorted(missing)}")
    whens = " ".join(f"WHEN {fact_sql[fact]} THEN %(status_{status.value})s" for status, fact in STATUS_RULES)
    return f"CASE {whens} ELSE %(status_{FALLBACK_STATUS.value})s END"


def status_case(fact_expressions: Mapping[str, Q | Expression]) -> Case:
    """The same derivation as a SQL ``CASE``: ``fact_expressions`` maps each fact name
    to a boolean expression over the row being annotated."""
    missing = {fact for _, fact in STATUS_RULES} - fact_expressions.keys()
    if missing:
        raise ValueError(f"missing facts: {sorted(missing)}")
    return Case(
        *[When(fact_expressions[fact], then=Value(status.value)) for status, fact in STATUS_RULES],
        default=Value(FALLBACK_STATUS.value),
        output_field=models.CharField(max_length=20),
    )
