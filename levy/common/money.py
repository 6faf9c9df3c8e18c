from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from levy.common.errors import ValidationError

MAX_DIGITS = 14
# A stored running total of many amounts (a bill's collected money): room for a million
# payments of MAX_AMOUNT, so a total never overflows where one amount cannot.
TOTAL_DIGITS = 20
DECIMAL_PLACES = 2
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("999999999999.99")
# ISO 4217 currencies without minor units; every other currency is stored with two
# decimal places (the ledger's precision).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)


def currency_places(currency: str | None) -> int:
    """Decimal places an amount in ``currency`` may have."""
    return 0 if (currency or "").upper() in ZERO_DECIMAL_CURRENCIES else DECIMAL_PLACES


def amount_pattern(places: int) -> re.Pattern[str]:
    """ASCII digits, then at most ``places`` decimals: no exponent, sign, separator,
    space or non-ASCII digit (Python's ``Decimal`` accepts all of those)."""
    decimals = rf"(\.[0-9]{{1,{places}}})?" if places else ""
    return re.compile(rf"[0-9]+{decimals}")


def amount_format_message(places: int) -> str:
    if places == 0:
        return 'Enter the amount in whole units, digits only, e.g. "15000".'
    return f'Enter the amount as digits with at most {places} decimal places, e.g. "15000.00".'


def parse_amount(value: object, *, field: str = "amount", currency: str | None = None) -> Decimal:
    """Return ``value`` as an exact, positive two-place Decimal or raise ValidationError.

    A string must be ASCII digits with at most the currency's decimal places
    (``^[0-9]+(\\.[0-9]{1,2})?$`` for NGN). Floats are refused outright: a float has
    already lost the exact value.
    """
    places = currency_places(currency)
    if isinstance(value, (float, bool)):
        raise ValidationError(fields={field: ['Send amounts as decimal strings, e.g. "15000.00".']})
    if isinstance(value, str) and not amount_pattern(places).fullmatch(value):
        raise ValidationError(fields={field: [amount_format_message(places)]})
    if not isinstance(value, (str, int, Decimal)):
        raise ValidationError(fields={field: ["Enter a valid amount."]})
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValidationError(fields={field: ["Enter a valid amount."]}) from None
    if not amount.is_finite():
        raise ValidationError(fields={field: ["Enter a valid amount."]})
    if amount != amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):
        raise ValidationError(fields={field: [amount_format_message(places)]})
    if amount <= 0:
        raise ValidationError(fields={field: ["The amount must be greater than zero."]})
    if amount > MAX_AMOUNT:
        raise ValidationError(fields={field: [f"The amount must not exceed {MAX_AMOUNT}."]})
    return amount.quantize(CENT)
