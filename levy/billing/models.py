from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from levy.billing import rules
from levy.billing.status import DisputeStatus
from levy.common.models import UUIDModel
from levy.common.money import DECIMAL_PLACES, MAX_DIGITS, TOTAL_DIGITS

if TYPE_CHECKING:
    from levy.accounts.models import User
    from levy.billing.status import BillStatus

__all__ = ["Bill", "BillAcknowledgement", "BillCategory", "BillCounter", "BillDispute", "DisputeStatus"]


class BillCategory(models.TextChoices):
    SERVICE_CHARGE = "service_charge", "Service charge"
    SECURITY = "security", "Security"
    WASTE = "waste", "Waste"
    WATER = "water", "Water"
    ELECTRICITY = "electricity", "Electricity"
    MAINTENANCE = "maintenance", "Maintenance"
    OTHER = "other", "Other"


class LateFeeKind(models.TextChoices):
    FIXED = "fixed", "Fixed amount"
    PERCENT = "percent", "Percentage of the bill"


class ScheduleFrequency(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"
    YEARLY = "yearly", "Yearly"


MONTHS_PER_PERIOD = {ScheduleFrequency.MONTHLY: 1, ScheduleFrequency.QUARTERLY: 3, ScheduleFrequency.YEARLY: 12}


class BillSchedule(UUIDModel):
    """A recurring bill: the terms of one bill per period (monthly, quarterly, yearly),
    estate-wide (``user`` null) or for one resident.

    Period ``n`` (from 0) falls due ``n`` periods after ``first_due_date`` and is issued
    ``issue_days_before`` days earlier, by ``levy.billing.schedules.schedules_issue_due``
    (Celery beat). ``next_period`` and ``next_issue_on`` say what comes next; the unique
    (schedule, period) key on ``Bill`` is what makes each period's bill exist at most
    once, whatever runs the issuing and however often.
    """

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="bill_schedules")
    title = models.CharField(max_length=160)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=32, choices=BillCategory.choices, default=BillCategory.OTHER)
    amount = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    allow_payment_after_due = models.BooleanField(default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty for an estate-wide schedule.",
    )
    frequency = models.CharField(max_length=16, choices=ScheduleFrequency.choices)
    first_due_date = models.DateField()
    issue_days_before = models.PositiveSmallIntegerField(default=14)
    next_period = models.PositiveIntegerField(default=0)
    next_issue_on = models.DateField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    paused_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="schedule_amount_positive"),
            models.CheckConstraint(
                condition=Q(frequency__in=ScheduleFrequency.values), name="schedule_frequency_valid"
            ),
            models.CheckConstraint(condition=Q(category__in=BillCategory.values), name="schedule_category_valid"),
            models.CheckConstraint(condition=Q(issue_days_before__lte=366), name="schedule_lead_at_most_a_year"),
        ]
        indexes = [
            models.Index(fields=["cluster", "-created_at"], name="schedule_cluster_recent_idx"),
            # What the beat task reads: the running schedules whose next bill is due.
            models.Index(
                fields=["next_issue_on"],
                name="schedule_running_next_idx",
                condition=Q(paused_at__isnull=True, ended_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.frequency})"

    def is_cluster_wide(self) -> bool:
        return self.user_id is None

    @property
    def status(self) -> str:
        """ "ended" (for good), "paused" or "active" (issuing its periods)."""
        if self.ended_at is not None:
            return "ended"
        return "paused" if self.paused_at is not None else "active"


class Bill(UUIDModel):
    """One bill: estate-wide (``user`` is null — one row, whatever the estate's size)
    or for one member. It has no status column; see ``levy.billing.status``.

    ``created_at`` is the bill's issue time: an estate-wide bill applies to the active
    resident members whose membership began on or before it.
    """

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="bills")
    reference = models.CharField(max_length=32, editable=False)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=32, choices=BillCategory.choices, default=BillCategory.OTHER)
    amount = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    due_date = models.DateField()
    allow_payment_after_due = models.BooleanField(default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="personal_bills",
        help_text="Empty for an estate-wide bill.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cancellation_reason = models.TextField(blank=True)
    acknowledged_by = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="BillAcknowledgement", related_name="acknowledged_bills", blank=True
    )
    schedule = models.ForeignKey(
        BillSchedule, null=True, blank=True, on_delete=models.PROTECT, related_name="bills", db_index=False
    )
    schedule_period = models.PositiveIntegerField(null=True, blank=True)
    # The late-fee rule ("" = none): a fixed amount or a percentage of ``amount``,
    # charged to each member still owing ``late_fee_grace_days`` after the due date
    # (levy.billing.late_fees). ``late_fees_issued_at``: when that was done.
    late_fee_kind = models.CharField(max_length=16, choices=LateFeeKind.choices, blank=True, default="", db_default="")
    late_fee_value = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, null=True, blank=True)
    late_fee_grace_days = models.PositiveSmallIntegerField(null=True, blank=True)
    late_fees_issued_at = models.DateTimeField(null=True, blank=True)
    # Set on a late-fee bill: the bill it is the late fee of.
    late_fee_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="late_fees", db_index=False
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(late_fee_kind="", late_fee_value__isnull=True, late_fee_grace_days__isnull=True)
                | Q(late_fee_kind=LateFeeKind.FIXED, late_fee_value__gt=0, late_fee_grace_days__isnull=False)
                | Q(
                    late_fee_kind=LateFeeKind.PERCENT,
                    late_fee_value__gt=0,
                    late_fee_value__lte=100,
                    late_fee_grace_days__isnull=False,
                ),
                name="bill_late_fee_rule_valid",
            ),
            # A late fee is one member's, and carries no late fee of its own.
            models.CheckConstraint(
                condition=Q(late_fee_of__isnull=True) | Q(user__isnull=False, late_fee_kind=""),
                name="bill_late_fee_is_a_members",
            ),
            # One late fee per member per bill, whoever issues it and however often.
            models.UniqueConstraint(
                fields=["late_fee_of", "user"],
                condition=Q(late_fee_of__isnull=False),
                name="late_fee_once_per_member",
            ),
            # Each period of a schedule is billed at most once, whoever issues it.
            models.UniqueConstraint(
                fields=["schedule", "schedule_period"],
                condition=Q(schedule__isnull=False),
                name="bill_once_per_schedule_period",
            ),
            models.CheckConstraint(
                condition=Q(schedule__isnull=True, schedule_period__isnull=True)
                | Q(schedule__isnull=False, schedule_period__isnull=False),
                name="bill_schedule_period_consistent",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="bill_amount_positive"),
            models.UniqueConstraint(fields=["cluster", "reference"], name="bill_reference_unique_in_cluster"),
            # Target for the composite foreign keys that keep payments and disputes
            # inside the bill's estate.
            models.UniqueConstraint(fields=["cluster", "id"], name="bill_cluster_id_unique"),
            models.CheckConstraint(
                condition=Q(cancelled_at__isnull=True, cancelled_by__isnull=True)
                | Q(cancelled_at__isnull=False, cancelled_by__isnull=False),
                name="bill_cancellation_consistent",
            ),
            models.CheckConstraint(condition=Q(category__in=BillCategory.values), name="bill_category_valid"),
        ]
        indexes = [
            models.Index(fields=["cluster", "-created_at"], name="bill_cluster_recent_idx"),
            models.Index(fields=["cluster", "due_date"], name="bill_cluster_due_idx"),
            models.Index(
                fields=["cluster", "user", "-created_at"],
                name="bill_user_specific_idx",
                condition=Q(user__isnull=False),
            ),
            models.Index(
                fields=["cluster", "-created_at"],
                name="bill_cluster_wide_idx",
                condition=Q(user__isnull=True),
            ),
            # What the late-fee task reads: bills with a rule whose fees are not issued.
            models.Index(
                fields=["due_date"],
                name="late_fee_pending_idx",
                condition=Q(late_fees_issued_at__isnull=True, cancelled_at__isnull=True) & ~Q(late_fee_kind=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    # --- one member's view of the bill, for a page that shows one bill (levy.billing.rules)

    def is_cluster_wide(self) -> bool:
        return self.user_id is None

    def applies_to(self, user: User) -> bool:
        return rules.read_member_facts(bill=self, user=user).applies

    def can_be_acknowledged_by(self, user: User) -> bool:
        return rules.acknowledge_refusal(self, rules.read_member_facts(bill=self, user=user)) is None

    def can_be_paid_by(self, user: User, today: datetime.date | None = None) -> bool:
        return rules.payment_refusal(self, rules.read_member_facts(bill=self, user=user), today) is None

    def status_for(self, user: User, today: datetime.date | None = None) -> BillStatus:
        return rules.read_member_facts(bill=self, user=user).status(self, today)

    def clean(self) -> None:
        """Refuse invalid configurations. The services check the same rules (with
        field-level errors) before they write; this serves model forms and shells."""
        from levy.estates.models import Membership

        errors: dict[str, list[str]] = {}
        if self.amount is not None and self.amount <= 0:
            errors.setdefault("amount", []).append("The amount must be greater than zero.")
        if self.user_id is not None and self.cluster_id is not None:
            is_billable = Membership.objects.filter(
                cluster_id=self.cluster_id, user_id=self.user_id, active=True, is_resident=True
            ).exists()
            if not is_billable:
                errors.setdefault("user", []).append("The bill's user must be an active resident member of the estate.")
        if errors:
            raise DjangoValidationError(errors)


class BillAcknowledgement(UUIDModel):
    """A member's acknowledgement of a bill: the fraud guard before any money moves."""

    bill = models.ForeignKey(Bill, on_delete=models.PROTECT, related_name="acknowledgements")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    acknowledged_at = models.DateTimeField(default=timezone.now)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bill", "user"], name="acknowledgement_once_per_member"),
        ]
        indexes = [
            # One member's acknowledgements, read from the index alone (the member list's
            # bill summaries).
            models.Index(fields=["user", "bill"], name="ack_member_bills_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} acknowledged {self.bill}"


class BillDispute(UUIDModel):
    """A member's claim that a bill is wrong. Upheld waives the bill for that member."""

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="+")
    bill = models.ForeignKey(Bill, on_delete=models.PROTECT, related_name="disputes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bill_disputes")
    reason = models.TextField()
    status = models.CharField(max_length=16, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bill", "user"], condition=Q(status="open"), name="dispute_one_open_per_member"
            ),
            models.UniqueConstraint(
                fields=["bill", "user"], condition=Q(status="upheld"), name="dispute_one_upheld_per_member"
            ),
            models.CheckConstraint(condition=Q(status__in=DisputeStatus.values), name="dispute_status_valid"),
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True, resolved_by__isnull=True)
                | (~Q(status="open") & Q(resolved_at__isnull=False, resolved_by__isnull=False)),
                name="dispute_resolution_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["cluster", "status", "-created_at"], name="dispute_cluster_status_idx"),
            models.Index(fields=["bill", "status"], name="dispute_bill_status_idx"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Dispute {self.id} on {self.bill_id} ({self.status})"


class BillCounter(models.Model):
    """Running counts over a bill's audience, so lists and the dashboard read a few
    small rows per bill instead of counting 50,000 residents' facts.

    Every service that changes a fact (acknowledgement, dispute, payment, refund, a
    membership joining or leaving the audience) adds its delta in the same transaction.
    A bill's counts are the sums over its rows; the rows are split into ``slot``\\ s by
    member so that residents paying the same bill at once do not queue on one row.
    ``levy.billing.counters.counters_drift`` recomputes them from the facts
    (``manage.py bill_counters --check``).
    """

    id = models.BigAutoField(primary_key=True)
    # The unique (bill, slot) index serves lookups by bill; no second index.
    bill = models.ForeignKey(Bill, on_delete=models.CASCADE, related_name="counters", db_index=False)
    slot = models.PositiveSmallIntegerField()
    eligible = models.IntegerField(default=0)
    acknowledged = models.IntegerField(default=0)
    paid = models.IntegerField(default=0)
    waived = models.IntegerField(default=0)
    disputed = models.IntegerField(default=0)
    collected = models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=DECIMAL_PLACES, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bill", "slot"], name="billcounter_bill_slot_unique")]

    def __str__(self) -> str:
        return f"counts of {self.bill_id} slot {self.slot}"
