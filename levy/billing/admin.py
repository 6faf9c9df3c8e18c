"""Bills, acknowledgements and disputes in the Django admin: view-only.

Bills are created, edited, cancelled and resolved by estate staff through the
billing services, which number them, freeze their terms, notify and audit; the
platform operator holds no billing permission in any estate. So nothing here adds,
changes or deletes a bill (the ledger references them) or its acknowledgements and
disputes. A bill has no status column: its status is per member (see
``levy.billing.status``), so it is not shown as one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html

from levy.billing.models import Bill, BillAcknowledgement, BillDispute
from levy.common.admin import ViewOnlyModelAdmin, ViewOnlyTabularInline, changelist_link
from levy.wallets.models import Transaction

INLINE_LIMIT = 50


class FirstRowsFormSet(BaseInlineFormSet):
    """Show at most ``INLINE_LIMIT`` rows: an estate-wide bill of a 50,000-resident
    estate has up to 50,000 acknowledgements. The full list is one link away."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_limited_queryset"):
            self._limited_queryset = super().get_queryset()[:INLINE_LIMIT]
        return self._limited_queryset


class AcknowledgementInline(ViewOnlyTabularInline):
    model = BillAcknowledgement
    formset = FirstRowsFormSet
    fields = ("user", "acknowledged_at", "ip_address", "user_agent")
    readonly_fields = fields
    ordering = ("acknowledged_at", "id")
    verbose_name_plural = f"Acknowledgements (first {INLINE_LIMIT}; see “All acknowledgements” above for the rest)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[BillAcknowledgement]:
        return super().get_queryset(request).select_related("user")


class DisputeInline(ViewOnlyTabularInline):
    model = BillDispute
    formset = FirstRowsFormSet
    fields = ("user", "status", "reason", "created_at", "resolved_by", "resolved_at", "resolution_note")
    readonly_fields = fields
    ordering = ("-created_at", "id")
    verbose_name_plural = f"Disputes (first {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[BillDispute]:
        return super().get_queryset(request).select_related("user", "resolved_by")


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return (("estate", "Estate-wide"), ("user", "One member"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "estate":
            return queryset.filter(user__isnull=True)
        if self.value() == "user":
            return queryset.filter(user__isnull=False)
        return queryset


class CancelledFilter(admin.SimpleListFilter):
    title = "cancelled"
    parameter_name = "cancelled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return (("yes", "Cancelled"), ("no", "Not cancelled"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(cancelled_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(cancelled_at__isnull=True)
        return queryset


@admin.register(Bill)
class BillAdmin(ViewOnlyModelAdmin):
    list_display = ("reference", "title", "cluster", "scope", "amount_display", "due_date", "cancelled_at")
    list_display_links = ("reference", "title")
    list_filter = (ScopeFilter, CancelledFilter, "category", "allow_payment_after_due", "cluster")
    list_select_related = ("cluster", "user")
    search_fields = ("reference", "title", "user__email", "cluster__name")
    date_hierarchy = "due_date"
    ordering = ("-created_at", "-id")
    fieldsets = (
        (None, {"fields": ("reference", "cluster", "title", "description", "category")}),
        ("Terms", {"fields": ("scope", "amount_display", "due_date", "allow_payment_after_due")}),
        ("History", {"fields": ("created_by", "created_at", "updated_at")}),
        ("Cancellation", {"fields": ("cancelled_at", "cancelled_by", "cancellation_reason")}),
        ("Related", {"fields": ("related_links",)}),
    )
    readonly_fields = ("scope", "amount_display", "related_links")
    inlines = (AcknowledgementInline, DisputeInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Bill]:
        # The change list applies list_select_related only to a queryset without
        # select_related, so this one names everything both pages need.
        return super().get_queryset(request).select_related("cluster", "user", "created_by", "cancelled_by")

    @admin.display(description="Scope", ordering="user__email")
    def scope(self, obj: Bill) -> str:
        return obj.user.email if obj.user is not None else "Estate-wide"

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Bill) -> str:
        return f"{obj.cluster.currency} {obj.amount:,.2f}"

    @admin.display(description="Related rows")
    def related_links(self, obj: Bill) -> str:
        return format_html(
            "{} · {} · {}",
            changelist_link(BillAcknowledgement, "All acknowledgements", bill__exact=obj.pk),
            changelist_link(BillDispute, "All disputes", bill__exact=obj.pk),
            changelist_link(Transaction, "Ledger entries", bill__exact=obj.pk),
        )


@admin.register(BillAcknowledgement)
class BillAcknowledgementAdmin(ViewOnlyModelAdmin):
    list_display = ("acknowledged_at", "bill", "user", "ip_address", "user_agent")
    list_filter = ("bill__cluster",)
    list_select_related = ("bill", "user")
    search_fields = ("bill__reference", "user__email")
    date_hierarchy = "acknowledged_at"
    show_full_result_count = False
    fields = ("bill", "user", "acknowledged_at", "ip_address", "user_agent")


@admin.register(BillDispute)
class BillDisputeAdmin(ViewOnlyModelAdmin):
    list_display = ("created_at", "bill", "user", "status", "resolved_at", "resolved_by", "cluster")
    list_filter = ("status", "cluster")
    list_select_related = ("bill", "user", "resolved_by", "cluster")
    search_fields = ("bill__reference", "user__email", "reason")
    date_hierarchy = "created_at"
    fields = (
        "cluster",
        "bill",
        "user",
        "reason",
        "status",
        "created_at",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    )
