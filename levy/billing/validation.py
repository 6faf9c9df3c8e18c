"""A bill's input and its checks: what a manager or a schedule may set on a bill.

The services (``levy.billing.services``) and the schedules (``levy.billing.schedules``)
validate through these, so a bill's terms are checked the same way whoever issues it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from levy.billing.models import BillCategory, LateFeeKind
from levy.billing.selectors import estate_today
from levy.common.errors import ValidationError
from levy.common.money import parse_amount

MAX_TEXT = 5000


@dataclass(frozen=True)
class BillInput:
    title: str
    description: str
    category: str
    amount: Any
    due_date: datetime.date
    allow_payment_after_due: bool
    # The late-fee rule, set when the bill is created (see levy.billing.late_fees):
    # "" (none), "fixed" (an amount) or "percent" (of the bill's amount).
    late_fee_kind: str = ""
    late_fee_value: Any = None
    late_fee_grace_days: Any = None


def clean_text(value: Any, field: str, *, required: bool, max_length: int, errors: dict[str, list[str]]) -> str:
    text = (value or "").strip() if isinstance(value, str) or value is None else None
    if text is None:
        errors[field] = ["Enter text."]
        return ""
    if required and not text:
        errors[field] = ["This field is required."]
    elif len(text) > max_length:
        errors[field] = [f"Use at most {max_length} characters."]
    return text


# How far ahead a due date may be: a typo such as 9999-12-31 is refused, not stored.
MAX_DUE_YEARS = 5


def latest_due_date() -> datetime.date:
    today = estate_today()
    try:
        return today.replace(year=today.year + MAX_DUE_YEARS)
    except ValueError:  # 29 February
        return today.replace(year=today.year + MAX_DUE_YEARS, day=28)


def bill_values(data: BillInput, *, currency: str, due_date_must_be_future: bool = True) -> dict[str, Any]:
    """The bill's own fields, cleaned, or ``ValidationError`` naming each bad one."""
    errors: dict[str, list[str]] = {}
    title = clean_text(data.title, "title", required=True, max_length=200, errors=errors)
    description = clean_text(data.description, "description", required=False, max_length=MAX_TEXT, errors=errors)
    if data.category not in BillCategory.values:
        errors["category"] = [f"Choose one of: {', '.join(BillCategory.values)}."]
    amount = None
    try:
        amount = parse_amount(data.amount, currency=currency)
    except ValidationError as exc:
        errors.update(exc.fields)
    if not isinstance(data.due_date, datetime.date) or isinstance(data.due_date, datetime.datetime):
        errors["due_date"] = ["Enter a date (YYYY-MM-DD)."]
    elif due_date_must_be_future and data.due_date < estate_today():
        errors["due_date"] = ["The due date cannot be in the past."]
    elif data.due_date > latest_due_date():
        errors["due_date"] = [f"The due date must be within {MAX_DUE_YEARS} years from today."]
    if errors:
        raise ValidationError(fields=errors)
    return {
        "title": title,
        "description": description,
        "category": data.category,
        "amount": amount,
        "due_date": data.due_date,
        "allow_payment_after_due": bool(data.allow_payment_after_due),
    }


MAX_GRACE_DAYS = 366


def late_fee_values(data: BillInput, *, currency: str) -> dict[str, Any]:
    """The late-fee rule's fields, or ``ValidationError`` naming each bad one."""
    if not data.late_fee_kind:
        extra = {"late_fee_value": data.late_fee_value, "late_fee_grace_days": data.late_fee_grace_days}
        given = [name for name, value in extra.items() if value is not None]
        if given:
            raise ValidationError(fields={name: ["Choose a late_fee_kind first."] for name in given})
        return {}
    errors: dict[str, list[str]] = {}
    if data.late_fee_kind not in LateFeeKind.values:
        errors["late_fee_kind"] = [f"Choose one of: {', '.join(LateFeeKind.values)}."]
    value = None
    percent = data.late_fee_kind == LateFeeKind.PERCENT
    if data.late_fee_value is None or data.late_fee_value == "":
        errors["late_fee_value"] = [
            'Enter the percentage of the bill\'s amount, e.g. "5" or "2.5".' if percent else "Enter the fee's amount."
        ]
    else:
        try:
            # A fixed fee is money in the estate's currency; a percentage has up to two places.
            value = parse_amount(data.late_fee_value, field="late_fee_value", currency=None if percent else currency)
        except ValidationError as exc:
            errors.update(exc.fields)
            if percent:
                # The money wording ("the amount", "15000.00") would mislead here.
                errors["late_fee_value"] = ['Enter a percentage above 0, at most 100, e.g. "5" or "2.5".']
    if value is not None and data.late_fee_kind == LateFeeKind.PERCENT and value > 100:
        errors["late_fee_value"] = ["A percentage is at most 100."]
    grace = data.late_fee_grace_days
    if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= MAX_GRACE_DAYS:
        errors["late_fee_grace_days"] = [f"Enter a whole number of days from 0 to {MAX_GRACE_DAYS}."]
    if errors:
        raise ValidationError(fields=errors)
    return {"late_fee_kind": data.late_fee_kind, "late_fee_value": value, "late_fee_grace_days": grace}
