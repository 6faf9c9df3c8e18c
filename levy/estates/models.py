from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from levy.common.models import UUIDModel
from levy.estates.permissions import Role


def default_currency() -> str:
    return str(settings.LEVY_DEFAULT_CURRENCY)


class Cluster(UUIDModel):
    """An estate. Every estate-scoped row carries a ``cluster_id``."""

    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default=default_currency, help_text="ISO 4217 code, e.g. NGN")
    # Next bill number; bumped with a conditional UPDATE when a bill is created.
    bill_sequence = models.PositiveIntegerField(default=0, editable=False)
    # Active resident memberships, kept by PostgreSQL triggers on estates_membership: the
    # audience of a new estate-wide bill, read without counting 50,000 rows.
    billable_members = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="cluster_currency_iso4217"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(UUIDModel):
    """A person's place in one estate: their role and whether they live there.

    Memberships are never deleted: deactivation keeps the history that bills,
    payments and audit records point to.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.RESIDENT)
    is_resident = models.BooleanField(default=True, help_text="Only resident memberships are billed.")
    joined_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "user"], name="membership_one_per_user_per_cluster"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
            models.CheckConstraint(
                condition=Q(active=True, deactivated_at__isnull=True) | Q(active=False, deactivated_at__isnull=False),
                name="membership_deactivation_consistent",
            ),
        ]
        indexes = [
            # Who an estate-wide bill applies to: active residents by join time.
            models.Index(
                fields=["cluster", "joined_at"],
                name="membership_billable_idx",
                condition=Q(active=True, is_resident=True),
            ),
            # The member list's pages, newest first, without sorting the whole estate.
            models.Index(fields=["cluster", "joined_at", "id"], name="membership_list_idx"),
            # The estate's staff by role (who is notified of acknowledgements and disputes):
            # a few rows, found without reading the estate's residents.
            models.Index(fields=["cluster", "role"], name="membership_role_idx", condition=Q(active=True)),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.cluster} ({self.role})"


class MemberImport(UUIDModel):
    """One uploaded members CSV and the background job that imports it: its status,
    progress and per-line errors (levy/members/imports.py). The file is kept only until
    the job ends."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        VALIDATING = "validating", "Checking the lines"
        IMPORTING = "importing", "Importing"
        SUCCEEDED = "succeeded", "Imported"
        FAILED = "failed", "Nothing imported"

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="member_imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="member_imports"
    )
    file_name = models.CharField(max_length=255, blank=True)
    content = models.TextField(blank=True, help_text="The CSV as uploaded; emptied when the import ends.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    total_lines = models.PositiveIntegerField(default=0, help_text="Lines after the header.")
    processed_lines = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0, help_text="Bad lines (only the first 1,000 are kept).")
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["cluster", "-created_at"], name="member_import_recent_idx")]

    def __str__(self) -> str:
        return f"import {self.pk} into {self.cluster_id} ({self.status})"
