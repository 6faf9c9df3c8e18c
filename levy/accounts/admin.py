"""People in the Django admin: the email-login user.

Roles are per membership, never on the user, so a person's page lists their
memberships (read-only: memberships change through the estate services).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.http import HttpRequest

from levy.accounts.models import User
from levy.common.admin import ViewOnlyTabularInline
from levy.estates.models import Membership


def _normalized_email(value: str) -> str:
    # The same normalisation as UserManager.create_user: emails are stored lower-case.
    return User.objects.normalize_email(value).strip().lower()


class UserCreationAdminForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")

    def clean_email(self) -> str:
        return _normalized_email(self.cleaned_data["email"])


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        return _normalized_email(self.cleaned_data["email"])


class MembershipInline(ViewOnlyTabularInline):
    model = Membership
    fk_name = "user"
    fields = ("cluster", "role", "is_resident", "active", "joined_at", "deactivated_at")
    readonly_fields = fields
    ordering = ("joined_at",)
    verbose_name_plural = "Memberships (roles are per estate)"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("cluster")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "name", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "name", "is_active", "is_staff", "is_superuser", "date_joined", "last_login")
    list_filter = ("is_superuser", "is_staff", "is_active")
    search_fields = ("email", "name")
    ordering = ("email",)
    date_hierarchy = "date_joined"
    filter_horizontal = ("groups", "user_permissions")
    inlines = (MembershipInline,)

    actions = ("unlock_sign_in",)

    @admin.action(description="Unlock sign-in (after too many wrong passwords)")
    def unlock_sign_in(self, request: HttpRequest, queryset: Any) -> None:
        from levy.accounts.signin_guard import account_unlock
        from levy.common.origin import origin_of

        unlocked = sum(
            account_unlock(user=user, actor=request.user, origin=origin_of(request))  # type: ignore[arg-type]
            for user in queryset
        )
        self.message_user(request, f"Unlocked {unlocked} account(s); the others had no lock.")

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        # A person being added has no memberships yet.
        return self.inlines if obj is not None else ()
