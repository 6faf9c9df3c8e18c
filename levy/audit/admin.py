"""The audit trail in the Django admin: viewable, never writable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from levy.audit.models import AuditEvent
from levy.common.admin import ViewOnlyModelAdmin


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
