"""The money type the billing reads share, and the estate's clock (``levy.billing.status``)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import DecimalField

from levy.billing.status import estate_today
from levy.common.money import DECIMAL_PLACES, MAX_DIGITS

__all__ = ["MONEY", "ZERO", "estate_today"]

MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
ZERO = Decimal("0.00")
