"""The in-app inboxes in the Django admin: view-only.

Notifications are stored by the services, once per person per event; the admin
only shows them.
"""

from __future__ import annotations

from django.contrib import admin

from levy.common.admin import ViewOnlyModelAdmin
from levy.notifications.models import Delivery, Notification, NotificationIntent


@admin.register(Notification)
class NotificationAdmin(ViewOnlyModelAdmin):
    list_display = ("created_at", "recipient", "event", "priority", "title", "cluster", "read_at")
    list_filter = ("event", "priority", ("read_at", admin.EmptyFieldListFilter), "cluster")
    list_select_related = ("recipient", "cluster")
    search_fields = ("recipient__email", "title", "event_key")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "created_at",
        "recipient",
        "cluster",
        "event",
        "event_key",
        "priority",
        "title",
        "body",
        "context",
        "read_at",
    )


@admin.register(NotificationIntent)
class NotificationIntentAdmin(ViewOnlyModelAdmin):
    """The outbox: an intent with no ``delivered at`` after a few minutes is what the
    sweep retries; ``last error`` says why it has not gone."""

    list_display = ("created_at", "event", "cluster", "priority", "dispatched_at", "delivered_at", "delivered_count")
    list_filter = ("event", "priority", ("delivered_at", admin.EmptyFieldListFilter), "cluster")
    list_select_related = ("cluster",)
    search_fields = ("event_key",)
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(Delivery)
class DeliveryAdmin(ViewOnlyModelAdmin):
    list_display = ("updated_at", "channel", "status", "attempts", "next_attempt_at", "notification")
    list_filter = ("channel", "status")
    list_select_related = ("notification",)
    search_fields = ("notification__recipient__email", "last_error")
    raw_id_fields = ("notification", "intent")
    show_full_result_count = False
