"""The audit trail in the Django admin: viewable, never writable.

``ViewOnlyModelAdmin`` is shared by the admins of the rows that only the services
write (the ledger, bills and their facts, wallets, notifications, audit events): the
platform operator can look at them, and nothing in the admin adds, changes or
deletes one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from levy.audit.models import AuditEvent


def changelist_link(model: Any, label: str, **params: Any) -> SafeString:
    """A link to ``model``'s admin list, filtered by ``params``."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), label)


class ViewOnlyModelAdmin(admin.ModelAdmin):
    """No add, no change, no delete; the list and the detail page stay viewable."""

    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ViewOnlyTabularInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionAreaFilter(admin.SimpleListFilter):
    """Filter by the first part of the action (``bill.cancel`` → ``bill``).

    A fixed list rather than ``SELECT DISTINCT action``, which would scan the whole
    audit table on every page load.
    """

    title = "area"
    parameter_name = "area"
    AREAS = (
        ("cluster", "Estates"),
        ("member", "Members"),
        ("bill", "Bills"),
        ("dispute", "Disputes"),
        ("wallet", "Wallets"),
        ("payment", "Payments"),
    )

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return self.AREAS

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value:
            return queryset.filter(action__startswith=f"{value}.")
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ViewOnlyModelAdmin):
    list_display = ("created_at", "action", "target_type", "target_id", "actor", "cluster", "ip_address")
    list_filter = (ActionAreaFilter, "cluster")
    list_select_related = ("actor", "cluster")
    search_fields = ("action", "=target_id", "actor__email")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "created_at",
        "action",
        "cluster",
        "actor",
        "target_type",
        "target_id",
        "data",
        "ip_address",
        "user_agent",
    )
