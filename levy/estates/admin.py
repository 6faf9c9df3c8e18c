"""Estates and memberships in the Django admin.

The platform operator's two jobs (product.md) are available here, and both go
through the services, so they are validated, audited and give the member a wallet
exactly as through the API: adding an estate calls ``cluster_create``, adding a
member calls ``member_add``. Changing a membership (role, residency, deactivation)
is left to ``member_update`` through the API; here memberships are view-only after
creation, and neither estates nor memberships are ever deleted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest

from levy.common.errors import NotFoundError, PermissionDeniedError
from levy.common.origin import Origin, origin_of
from levy.estates.access import access_cluster
from levy.estates.models import Cluster, Membership
from levy.estates.services import cluster_create
from levy.members.services import member_add


def request_origin(request: HttpRequest) -> Origin:
    return origin_of(request)


def adopt(obj: models.Model, saved: models.Model) -> None:
    """Turn the admin's unsaved ``obj`` into the row a service has just created, so
    the admin's log entry and redirect point at it."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


# --- estates ----------------------------------------------------------------------------


class ClusterAddForm(forms.ModelForm):
    class Meta:
        model = Cluster
        fields = ("name", "currency")

    def clean_currency(self) -> str:
        # The service upper-cases the code; do it first so the model's ISO 4217 check
        # validates what will be stored.
        return str(self.cleaned_data["currency"]).strip().upper()


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ("name", "currency", "bill_sequence", "created_at")
    list_filter = ("currency",)
    search_fields = ("name",)
    ordering = ("name",)
    date_hierarchy = "created_at"
    readonly_fields = ("bill_sequence", "created_at")
    add_form = ClusterAddForm

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        # Every amount in an estate is in its currency: it is fixed at creation.
        return ("currency", *self.readonly_fields)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("name", "currency")
        return ("name", "currency", "bill_sequence", "created_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            cluster = cluster_create(
                operator=request.user,  # type: ignore[arg-type]
                name=obj.name,
                currency=obj.currency,
                origin=request_origin(request),
            )
        except PermissionDeniedError:
            raise PermissionDenied from None
        adopt(obj, cluster)


# --- memberships ------------------------------------------------------------------------

RESIDENCY_CHOICES = (
    ("", "Default for the role (residents live here, staff do not)"),
    ("yes", "Lives in the estate (billed)"),
    ("no", "Does not live in the estate (not billed)"),
)


class MembershipAddForm(forms.ModelForm):
    residency = forms.ChoiceField(choices=RESIDENCY_CHOICES, required=False, label="Residency")

    class Meta:
        model = Membership
        fields = ("cluster", "user", "role")

    def is_resident(self) -> bool | None:
        return {"yes": True, "no": False}.get(self.cleaned_data.get("residency") or "")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "user_name", "cluster", "role", "is_resident", "active", "joined_at")
    list_filter = ("role", "is_resident", "active", "cluster")
    list_select_related = ("user", "cluster")
    search_fields = ("user__email", "user__name", "cluster__name")
    date_hierarchy = "joined_at"
    autocomplete_fields = ("cluster", "user")
    add_form = MembershipAddForm
    actions = None

    @admin.display(description="Name", ordering="user__name")
    def user_name(self, obj: Membership) -> str:
        return obj.user.name

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("cluster", "user", "role", "residency")
        return ("user", "cluster", "role", "is_resident", "active", "joined_at", "deactivated_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        try:
            access = access_cluster(request.user, obj.cluster_id)  # type: ignore[arg-type]
            membership = member_add(
                access=access,
                email=obj.user.email,
                role=obj.role,
                is_resident=form.is_resident(),
                origin=request_origin(request),
            )
        except (NotFoundError, PermissionDeniedError):
            raise PermissionDenied from None
        adopt(obj, membership)
