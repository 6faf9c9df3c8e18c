from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from levy.common.errors import ValidationError

MAX_DIGITS = 14
DECIMAL_PLACES = 2
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("999999999999.99")


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """Return ``value`` as an exact, positive two-place Decimal or raise ValidationError.

    Floats are refused outright: a float has already lost the exact value.
    """
    if isinstance(value, (float, bool)):
        raise ValidationError(fields={field: ['Send amounts as decimal strings, e.g. "15000.00".']})
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(fields={field: ["Enter a valid amount."]}) from None
    if not amount.is_finite():
        raise ValidationError(fields={field: ["Enter a valid amount."]})
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise ValidationError(fields={field: ["Use at most two decimal places."]})
    if amount <= 0:
        raise ValidationError(fields={field: ["The amount must be greater than zero."]})
    if amount > MAX_AMOUNT:
        raise ValidationError(fields={field: [f"The amount must not exceed {MAX_AMOUNT}."]})
    return amount.quantize(CENT)
