"""The notification events: who gets each, at which priority, and what it says."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


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


# Titles and bodies are ``str.format`` templates over the event's context.
EVENT_SPECS: dict[str, EventSpec] = {
    NotificationEvents.PAYMENT_DUE: EventSpec(
        Priority.NORMAL,
        "New bill: {bill_title}",
        "{bill_reference} — {currency} {amount} is due on {due_date}. Please acknowledge it, then pay or dispute it.",
    ),
    NotificationEvents.BILL_ACKNOWLEDGED: EventSpec(
        Priority.NORMAL,
        "Bill acknowledged: {bill_title}",
        "{member_name} acknowledged {bill_reference} ({currency} {amount}, due {due_date}).",
    ),
    NotificationEvents.BILL_DISPUTED: EventSpec(
        Priority.HIGH,
        "Bill disputed: {bill_title}",
        "{member_name} disputed {bill_reference} ({currency} {amount}): {reason}",
    ),
    NotificationEvents.PAYMENT_FAILED: EventSpec(
        Priority.HIGH,
        "Payment failed: {bill_title}",
        "Your payment of {currency} {amount} for {bill_reference} failed: {failure_message}",
    ),
    NotificationEvents.PAYMENT_SUCCESSFUL: EventSpec(
        Priority.NORMAL,
        "Receipt: {bill_title}",
        "You paid {currency} {amount} for {bill_reference}. Receipt {transaction_reference}; "
        "wallet balance {currency} {wallet_balance}.",
    ),
    NotificationEvents.DISPUTE_RESOLVED: EventSpec(
        Priority.NORMAL,
        "Dispute {resolution}: {bill_title}",
        "Your dispute of {bill_reference} was {resolution}. {note}",
    ),
    NotificationEvents.BILL_CANCELLED: EventSpec(
        Priority.NORMAL,
        "Bill cancelled: {bill_title}",
        "{bill_reference} ({currency} {amount}) was cancelled: {reason}",
    ),
    NotificationEvents.PAYMENT_REMINDER: EventSpec(
        Priority.NORMAL,
        "Reminder: {bill_title}",
        "{bill_reference} — {currency} {amount} is due on {due_date}.",
    ),
    NotificationEvents.TOP_UP_CREDITED: EventSpec(
        Priority.NORMAL,
        "Wallet topped up: {currency} {amount}",
        "{currency} {amount} paid through {provider} (reference {top_up_reference}) is in your wallet. "
        "Wallet balance {currency} {wallet_balance}.",
    ),
    NotificationEvents.TOP_UP_MISMATCH: EventSpec(
        Priority.HIGH,
        "Top-up not credited: {top_up_reference}",
        "{provider} reported {reported_currency} {reported_amount} for top-up {top_up_reference} of {member_name}, "
        "which was for {currency} {amount}. Nothing was credited; check the payment in the provider's dashboard.",
    ),
    NotificationEvents.PAYMENT_REFUNDED: EventSpec(
        Priority.NORMAL,
        "Refund: {bill_title}",
        "Your payment of {currency} {amount} for {bill_reference} was refunded to your wallet: {reason}. "
        "Wallet balance {currency} {wallet_balance}.{then}",
    ),
    NotificationEvents.MEMBERSHIP_ADDED: EventSpec(
        Priority.HIGH,
        "You were added to {cluster_name}",
        "An admin of {cluster_name} added you to the estate{as_role}. If you do not belong to this estate, "
        "leave it: POST /api/v1/clusters/{cluster_id}/leave/ (or ask its admin to remove you).",
    ),
}


def render(event: str, context: dict[str, object]) -> tuple[str, str]:
    spec = EVENT_SPECS[event]
    values = _Defaulting(context)
    return spec.title.format_map(values)[:200], spec.body.format_map(values)


class _Defaulting(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""
