"""Conversions between Levy's amounts (Decimal, two places, main unit) and the
providers' units. Never floats: JSON numbers are read as Decimal or int."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

HUNDRED = Decimal(100)
CENT = Decimal("0.01")


def to_minor_units(amount: Decimal) -> int:
    """Naira to kobo: an exact integer, or ValueError (Levy amounts have two places)."""
    minor = amount * HUNDRED
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than two decimal places")
    return int(minor)


def from_minor_units(value: Any) -> Decimal | None:
    """Kobo (an integer, or a string of digits) to naira; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        return None
    try:
        minor = Decimal(str(value))
    except InvalidOperation:
        return None
    if not minor.is_finite() or minor != minor.to_integral_value():
        return None
    return (minor / HUNDRED).quantize(CENT)


def from_major_units(value: Any) -> Decimal | None:
    """Naira as the provider sent it (int, Decimal from the JSON parser, or a string)
    to Decimal; kept exact, so 100.001 does not quietly become 100.00."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    return amount.quantize(CENT) if amount == amount.quantize(CENT) else amount


def major_units_text(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):f}"
