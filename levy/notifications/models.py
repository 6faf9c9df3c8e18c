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
