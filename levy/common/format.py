"""How Levy writes an amount and a date for people to read: one way each, used by the
pages (``levy.web.format`` and its template filters) and by the notifications' texts
(``levy.notifications.events``).

- An amount carries its estate's currency symbol and grouping: ``₦15,000.00``.
- A date is on the estate's calendar (``settings.TIME_ZONE``, the clock due dates are
  judged by): ``5 Dec 2026``.
"""

from __future__ import annotations

import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils import timezone

from levy.common.money import CENT

CURRENCY_SYMBOLS = {
    "NGN": "₦",
    "GHS": "GH₵",
    "KES": "KSh ",
    "ZAR": "R ",
    "USD": "$",
    "GBP": "£",
    "EUR": "€",
    "XOF": "CFA ",
}


def money(amount: object, currency: str = "NGN") -> str:
    """``₦15,000.00``; ``-₦500.00`` for a negative amount; an unknown currency is written
    as its code (``XYZ 15,000.00``); "" for what is not an amount."""
    try:
        value = Decimal(str(amount)).quantize(CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError, TypeError):
        return ""
    symbol = CURRENCY_SYMBOLS.get((currency or "").upper(), f"{(currency or '').upper()} ")
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.2f}"


def estate_date(value: datetime.date | datetime.datetime | None) -> str:
    """``5 Dec 2026`` on the estate's calendar."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        value = timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    return f"{value.day} {value:%b %Y}"


def estate_datetime(value: datetime.datetime | None) -> str:
    """``5 Dec 2026, 14:05`` in the estate's time zone."""
    if value is None:
        return ""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return f"{local.day} {local:%b %Y, %H:%M}"
