"""The pages' filters (built in to every template; see ``levy.web.format``)."""

from __future__ import annotations

import datetime
from typing import Any

from django import template
from django.utils.safestring import SafeString

from levy.web import format

register = template.Library()


@register.filter
def money(amount: Any, currency: str = "NGN") -> str:
    """``{{ bill.amount|money:estate.currency }}`` → ``₦15,000.00``"""
    return format.money(amount, currency)


@register.filter
def absolute(amount: Any) -> Any:
    """A ledger entry's size without its sign (a payment is stored negative)."""
    try:
        return abs(amount)
    except TypeError:
        return amount


@register.filter
def estate_date(value: datetime.date | datetime.datetime | None) -> str:
    return format.estate_date(value)


@register.filter
def estate_datetime(value: datetime.datetime | None) -> str:
    return format.estate_datetime(value)


@register.filter
def due_relative(value: datetime.date | None) -> str:
    return format.due_relative(value)


@register.filter
def ago(value: datetime.datetime | None) -> str:
    return format.ago(value)


@register.filter
def status_badge(status: Any) -> SafeString:
    return format.status_badge(status)


@register.filter
def entry_label(tx: Any) -> str:
    """``{{ tx|entry_label }}`` → "Top-up by card", "Bill payment", …"""
    return format.entry_label(tx)


@register.filter
def percent(rate: Any) -> str:
    """A fraction as a percentage: ``0.8125`` → ``81.3%``."""
    try:
        return f"{float(rate) * 100:.1f}%"
    except (TypeError, ValueError):
        return ""


@register.filter
def grouped(count: Any) -> str:
    """A count with thousands grouped: ``49500`` → ``49,500``."""
    try:
        return f"{int(count):,}"
    except (TypeError, ValueError):
        return str(count)


@register.simple_tag(takes_context=True)
def query_with(context: Any, **changes: Any) -> str:
    """The current query string with some parameters changed (``None`` or "" drops one):
    links that keep a list's filters, e.g. ``?{% query_with page=2 %}``."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    return str(params.urlencode())
