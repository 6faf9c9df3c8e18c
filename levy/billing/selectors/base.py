"""The estate's clock and the money type the billing reads share."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.db.models import DecimalField
from django.utils import timezone

from levy.common.money import DECIMAL_PLACES, MAX_DIGITS

MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
ZERO = Decimal("0.00")


def estate_today() -> datetime.date:
    """The estate calendar's date (settings.TIME_ZONE); the one clock for due dates."""
    return timezone.localdate()
