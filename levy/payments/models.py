from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from levy.common.models import UUIDModel
from levy.common.money import DECIMAL_PLACES, MAX_DIGITS


class Provider(models.TextChoices):
    PAYSTACK = "paystack", "Paystack"
    FLUTTERWAVE = "flutterwave", "Flutterwave"


class ProviderAccount(UUIDModel):
    """An estate's account with one payment provider: the estate collects into it.

    Secrets are stored sealed (``levy.payments.secrets``) and only their hints are ever
    shown. An estate may keep an account with each provider; at most one is active (the
    one new top-ups use), while top-ups already started with the other still verify
    with its credentials. ``id`` is the non-guessable part of the account's webhook URL.
    """

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="provider_accounts")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    active = models.BooleanField(default=False)
    public_key = models.CharField(max_length=200, blank=True)
    secret_key_sealed = models.TextField()
    secret_key_hint = models.CharField(max_length=40)
    webhook_secret_sealed = models.TextField(
        blank=True, help_text="Flutterwave's secret hash; Paystack signs webhooks with the secret key."
    )
    webhook_secret_hint = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "provider"], name="provider_account_one_per_provider"),
            models.UniqueConstraint(fields=["cluster"], condition=Q(active=True), name="provider_account_one_active"),
            models.CheckConstraint(condition=Q(provider__in=Provider.values), name="provider_account_provider_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} account of {self.cluster_id}{' (active)' if self.active else ''}"


class TopUpStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for the resident to pay, or for verification
    CREDITED = "credited", "Credited"  # verified and on the ledger (final)
    EXPIRED = "expired", "Expired"  # never confirmed in time; a later verified payment still credits
    MISMATCH = "mismatch", "Mismatch"  # the provider reported a different amount or currency: never credited
    FAILED = "failed", "Failed"  # the provider refused to start the payment (final, nothing was charged)


class TopUp(UUIDModel):
    """A resident's payment through a provider into their wallet.

    ``reference`` is ours, unique, and sent to the provider: every confirmation (return,
    webhook, sweep) is matched through it. The wallet is credited only from the
    provider's verify answer, once: the status moves from pending (or expired) to
    credited by one conditional UPDATE in the transaction that writes the ledger entry,
    and the entry's idempotency key (``topup:<reference>``) is unique per wallet.
    """

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(ProviderAccount, on_delete=models.PROTECT, related_name="top_ups")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    reference = models.CharField(max_length=40, unique=True)
    amount = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=TopUpStatus.choices, default=TopUpStatus.PENDING)
    idempotency_key = models.CharField(max_length=128)
    checkout_url = models.URLField(max_length=1000, blank=True)
    provider_transaction_id = models.CharField(max_length=64, blank=True)
    bill = models.ForeignKey(
        "billing.Bill",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Pay by card: the bill to pay once the top-up is credited.",
    )
    transaction = models.OneToOneField(
        "wallets.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="top_up"
    )
    bill_payment = models.OneToOneField(
        "wallets.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="paid_by_top_up"
    )
    bill_outcome = models.CharField(
        max_length=64, blank=True, help_text="Pay by card: 'paid', or the code of the rule that refused the payment."
    )
    failure_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)

    # Set (not stored) on the instance a confirmation returns when that call wrote the
    # ledger entry; a concurrent confirmer that found it done leaves it False.
    credited_now: bool = False

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=TopUpStatus.values), name="topup_status_valid"),
            models.CheckConstraint(
                condition=Q(status=TopUpStatus.CREDITED, transaction__isnull=False)
                | (~Q(status=TopUpStatus.CREDITED) & Q(transaction__isnull=True)),
                name="topup_credited_has_entry",
            ),
            models.UniqueConstraint(fields=["cluster", "user", "idempotency_key"], name="topup_idempotency_key"),
        ]
        indexes = [
            models.Index(fields=["cluster", "user", "-created_at"], name="topup_member_recent_idx"),
            models.Index(fields=["cluster", "-created_at"], name="topup_cluster_recent_idx"),
            models.Index(fields=["created_at"], name="topup_pending_idx", condition=Q(status=TopUpStatus.PENDING)),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.currency} ({self.status})"


class AnomalyKind(models.TextChoices):
    AMOUNT_MISMATCH = "amount_mismatch", "Amount differs from the top-up"
    CURRENCY_MISMATCH = "currency_mismatch", "Currency differs from the top-up"
    UNKNOWN_REFERENCE = "unknown_reference", "Reference matches no top-up of the estate"


class PaymentAnomaly(UUIDModel):
    """Something a provider (or someone posing as one) reported that Levy did not credit,
    kept for the estate's managers to look into."""

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(ProviderAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    top_up = models.ForeignKey(TopUp, null=True, blank=True, on_delete=models.PROTECT, related_name="anomalies")
    kind = models.CharField(max_length=40, choices=AnomalyKind.choices)
    source = models.CharField(max_length=20, help_text="webhook, return, sweep")
    reference = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["cluster", "-created_at"], name="anomaly_cluster_recent_idx")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}"
