"""Admin pieces shared by the apps.

``ViewOnlyModelAdmin`` serves the rows that only the services write (the ledger,
bills and their facts, wallets, notifications, audit events): the platform operator
can look at them, and nothing in the admin adds, changes or deletes one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString


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
