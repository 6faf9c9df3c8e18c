"""The in-app inboxes in the Django admin: view-only.

Notifications are stored by the services, once per person per event; the admin
only shows them.
"""

from __future__ import annotations

from django.contrib import admin

from levy.audit.admin import ViewOnlyModelAdmin
from levy.notifications.models import Notification


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
