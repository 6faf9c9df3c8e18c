"""Outbound channels. A channel is one small class with a name and ``send``; add SMS
or push by writing one and listing its name in ``LEVY_NOTIFICATION_CHANNELS`` — the
events and the fan-out do not change. The in-app inbox is the stored Notification
itself and needs no channel."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from levy.notifications.events import NotificationEvents, display_context
from levy.notifications.models import Delivery


class Channel(Protocol):
    name: ClassVar[str]

    def send(self, deliveries: list[Delivery]) -> dict[Any, str]:
        """Send each delivery; return {delivery id: error} for those that failed."""
        ...


class EmailChannel:
    """Email through Django's configured backend (SMTP in production, the console in
    the demo), text and HTML, one connection per batch."""

    name: ClassVar[str] = "email"

    def send(self, deliveries: list[Delivery]) -> dict[Any, str]:
        failures: dict[Any, str] = {}
        connection = get_connection(fail_silently=False)
        try:
            connection.open()
        except Exception as exc:
            return {d.pk: f"connection failed: {exc}" for d in deliveries}
        try:
            for delivery in deliveries:
                try:
                    connection.send_messages([self.message(delivery, connection)])
                except Exception as exc:
                    failures[delivery.pk] = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        return failures

    @staticmethod
    def message(delivery: Delivery, connection: Any) -> EmailMultiAlternatives:
        notification = delivery.notification
        recipient = notification.recipient
        context = {
            "notification": notification,
            "recipient_name": recipient.name or recipient.email,
            "context": display_context(notification.context),
            "site_url": settings.LEVY_SITE_URL,
            "receipt_url": receipt_url(notification.event, notification.context),
            "open_url": open_url(notification),
        }
        text = render_to_string("notifications/email.txt", context)
        html = render_to_string("notifications/email.html", context)
        message = EmailMultiAlternatives(
            subject=notification.title,
            body=text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[recipient.email],
            connection=connection,
            headers={"X-Levy-Notification": str(notification.pk)},
        )
        message.attach_alternative(html, "text/html")
        return message


def open_url(notification: Any) -> str:
    """The notification on the web, as a full URL: it opens what it is about (the bill),
    after sign-in if needed, and marks it read."""
    try:
        path = reverse("web:notification-open", kwargs={"notification_id": notification.pk})
    except NoReverseMatch:
        return str(settings.LEVY_SITE_URL)
    return str(settings.LEVY_SITE_URL).rstrip("/") + path


# The events whose ledger entry has a receipt: a bill paid, and a top-up credited to the wallet.
RECEIPT_EVENTS = frozenset({NotificationEvents.PAYMENT_SUCCESSFUL, NotificationEvents.TOP_UP_CREDITED})


def receipt_path(event: str, context: dict[str, Any]) -> str:
    """The payer's receipt of a successful payment or a credited top-up, as a path on
    this site ("" for other events): the inbox links to it."""
    if event not in RECEIPT_EVENTS or not context.get("transaction_id"):
        return ""
    try:
        return reverse(
            "member-transaction-receipt",
            kwargs={"cluster_id": context["cluster_id"], "transaction_id": context["transaction_id"]},
        )
    except (KeyError, NoReverseMatch):
        return ""


def receipt_url(event: str, context: dict[str, Any]) -> str:
    """The same as a full URL, for an email ("" for other events)."""
    path = receipt_path(event, context)
    return str(settings.LEVY_SITE_URL).rstrip("/") + path if path else ""


CHANNELS: dict[str, type[Any]] = {EmailChannel.name: EmailChannel}


def channel_named(name: str) -> Channel:
    channel: Channel = CHANNELS[name]()
    return channel
