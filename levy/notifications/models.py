from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from levy.common.models import UUIDModel
from levy.notifications.events import NotificationEvents, Priority


class Notification(UUIDModel):
    """One notification in one person's inbox.

    ``event_key`` names the occurrence (e.g. ``PAYMENT_DUE:bill:<id>``); the unique
    constraint on (recipient, event_key) is what makes a re-run deliver nothing twice.
    """

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notifications")
    cluster = models.ForeignKey("estates.Cluster", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    event = models.CharField(max_length=40, choices=NotificationEvents.choices)
    event_key = models.CharField(max_length=200)
    intent = models.ForeignKey(
        "NotificationIntent", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    title = models.CharField(max_length=200)
    body = models.TextField()
    context = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipient", "event_key"], name="notification_once_per_event_per_person"),
        ]
        indexes = [
            models.Index(fields=["recipient", "-created_at"], name="notification_inbox_idx"),
            models.Index(
                fields=["recipient", "-created_at"], name="notification_unread_idx", condition=Q(read_at__isnull=True)
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event} to {self.recipient_id}"


class NotificationIntent(UUIDModel):
    """The outbox: an event to deliver, written in the same transaction as the change
    that caused it. A worker fans it out; a periodic sweep re-dispatches any intent
    that was not delivered (broker down, worker killed), and the unique keys make every
    re-run deliver nothing twice."""

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="+")
    event = models.CharField(max_length=40, choices=NotificationEvents.choices)
    event_key = models.CharField(max_length=200, unique=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    recipients = models.JSONField()
    context = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last handed to the broker.")
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="Every inbox row written.")
    delivered_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    batched = models.BooleanField(
        default=False,
        db_default=False,  # a process still running the previous release inserts without it
        help_text="Few recipients: delivered together with other such intents by one deliver_pending task.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="intent_undelivered_idx", condition=Q(delivered_at__isnull=True)),
            models.Index(
                fields=["priority", "created_at"],
                name="intent_batch_pending_idx",
                condition=Q(delivered_at__isnull=True, batched=True),
            ),
        ]

    def __str__(self) -> str:
        return self.event_key


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Delivery(UUIDModel):
    """One notification sent through one outbound channel (email today; SMS or push
    later): attempts, the last failure, and when to try again. The inbox row itself
    is the in-app channel."""

    notification = models.ForeignKey(Notification, on_delete=models.PROTECT, related_name="deliveries")
    intent = models.ForeignKey(NotificationIntent, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=20)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel"], name="delivery_once_per_channel"),
        ]
        indexes = [
            models.Index(
                fields=["channel", "next_attempt_at"],
                name="delivery_due_idx",
                condition=Q(status__in=["pending", "sending", "failed"]),
            ),
            models.Index(fields=["intent", "status"], name="delivery_intent_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} for {self.notification_id} ({self.status})"
