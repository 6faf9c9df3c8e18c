"""The notification events: who gets each, at which priority, and what it says."""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass
from typing import Any

from django.db import models

from levy.common.format import estate_date, money


class NotificationEvents(models.TextChoices):
    PAYMENT_DUE = "PAYMENT_DUE", "Payment due"
    BILL_ACKNOWLEDGED = "BILL_ACKNOWLEDGED", "Bill acknowledged"
    BILL_DISPUTED = "BILL_DISPUTED", "Bill disputed"
    PAYMENT_FAILED = "PAYMENT_FAILED", "Payment failed"
    PAYMENT_SUCCESSFUL = "PAYMENT_SUCCESSFUL", "Payment successful"
    DISPUTE_RESOLVED = "DISPUTE_RESOLVED", "Dispute resolved"
    BILL_CANCELLED = "BILL_CANCELLED", "Bill cancelled"
    PAYMENT_REMINDER = "PAYMENT_REMINDER", "Payment reminder"
    TOP_UP_CREDITED = "TOP_UP_CREDITED", "Wallet topped up"
    TOP_UP_MISMATCH = "TOP_UP_MISMATCH", "Top-up not credited: mismatch"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED", "Payment refunded"
    MEMBERSHIP_ADDED = "MEMBERSHIP_ADDED", "Added to an estate"


class Priority(models.TextChoices):
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"


@dataclass(frozen=True)
class EventSpec:
    priority: Priority
    title: str
    body: str


# Titles and bodies are ``str.format`` templates over the event's context, its amounts
# and dates written as the pages write them (``display_context``).
EVENT_SPECS: dict[str, EventSpec] = {
    NotificationEvents.PAYMENT_DUE: EventSpec(
        Priority.NORMAL,
        "New bill: {bill_title}",
        "{bill_reference} — {amount} is due on {due_date}. Please acknowledge it, then pay or dispute it.",
    ),
    NotificationEvents.BILL_ACKNOWLEDGED: EventSpec(
        Priority.NORMAL,
        "Bill acknowledged: {bill_title}",
        "{member_name} acknowledged {bill_reference} ({amount}, due {due_date}).",
    ),
    NotificationEvents.BILL_DISPUTED: EventSpec(
        Priority.HIGH,
        "Bill disputed: {bill_title}",
        "{member_name} disputed {bill_reference} ({amount}): {reason}",
    ),
    NotificationEvents.PAYMENT_FAILED: EventSpec(
        Priority.HIGH,
        "Payment failed: {bill_title}",
        "Your payment of {amount} for {bill_reference} failed: {failure_message}",
    ),
    NotificationEvents.PAYMENT_SUCCESSFUL: EventSpec(
        Priority.NORMAL,
        "Receipt: {bill_title}",
        "You paid {amount} for {bill_reference}. Receipt {transaction_reference}; wallet balance {wallet_balance}.",
    ),
    NotificationEvents.DISPUTE_RESOLVED: EventSpec(
        Priority.NORMAL,
        "Dispute {resolution}: {bill_title}",
        "Your dispute of {bill_reference} was {resolution}. {note}",
    ),
    NotificationEvents.BILL_CANCELLED: EventSpec(
        Priority.NORMAL,
        "Bill cancelled: {bill_title}",
        "{bill_reference} ({amount}) was cancelled: {reason}",
    ),
    NotificationEvents.PAYMENT_REMINDER: EventSpec(
        Priority.NORMAL,
        "Reminder: {bill_title}",
        "{bill_reference} — {amount} is due on {due_date}.",
    ),
    NotificationEvents.TOP_UP_CREDITED: EventSpec(
        Priority.NORMAL,
        "Wallet topped up: {amount}",
        "{amount} paid through {provider} (reference {top_up_reference}) is in your wallet. "
        "Wallet balance {wallet_balance}.",
    ),
    NotificationEvents.TOP_UP_MISMATCH: EventSpec(
        Priority.HIGH,
        "Top-up not credited: {top_up_reference}",
        "{provider} reported {reported_amount} for top-up {top_up_reference} of {member_name}, "
        "which was for {amount}. Nothing was credited; check the payment in the provider's dashboard.",
    ),
    NotificationEvents.PAYMENT_REFUNDED: EventSpec(
        Priority.NORMAL,
        "Refund: {bill_title}",
        "Your payment of {amount} for {bill_reference} was refunded to your wallet: {reason}. "
        "Wallet balance {wallet_balance}.{then}",
    ),
    NotificationEvents.MEMBERSHIP_ADDED: EventSpec(
        Priority.HIGH,
        "You were added to {cluster_name}",
        "An admin of {cluster_name} added you to the estate{as_role}. If you do not belong to this estate, "
        "leave it: POST /api/v1/clusters/{cluster_id}/leave/ (or ask its admin to remove you).",
    ),
}


# The amounts of a context (stored as "15000.00") and the currency each is in.
MONEY_KEYS = {"amount": "currency", "wallet_balance": "currency", "reported_amount": "reported_currency"}
# Its dates (stored as "2026-12-31").
DATE_KEYS = ("due_date", "late_fee_of_due_date")


def display_context(context: dict[str, Any]) -> dict[str, Any]:
    """``context`` with its amounts and dates written for people: ``₦50,000.00``,
    ``31 Dec 2026``. The stored context stays as it is (raw values, which the API
    returns); the texts and the emails read this. A value that is not an amount or
    a date is left as it was written (an amount with its currency's code before it)."""
    shown = dict(context)
    for key, currency_key in MONEY_KEYS.items():
        if context.get(key) in (None, ""):
            continue
        currency = str(context.get(currency_key) or "")
        written = money(context[key], currency) if currency else ""
        shown[key] = written or f"{currency} {context[key]}".strip()
    for key in DATE_KEYS:
        if context.get(key) in (None, ""):
            continue
        with contextlib.suppress(ValueError):  # not a date: left as written
            shown[key] = estate_date(datetime.date.fromisoformat(str(context[key])))
    return shown


def render(event: str, context: dict[str, Any]) -> tuple[str, str]:
    """The title and body of ``event`` over ``context``."""
    spec = EVENT_SPECS[event]
    values = _Defaulting(display_context(context))
    return spec.title.format_map(values)[:200], spec.body.format_map(values)


class _Defaulting(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""
