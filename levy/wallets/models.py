from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from levy.common.models import UUIDModel
from levy.common.money import DECIMAL_PLACES, MAX_DIGITS


class Wallet(UUIDModel):
    """A member's prepaid balance in one estate.

    ``balance`` is a cache of the sum of the wallet's completed ledger entries, moved
    only by a conditional UPDATE in the same transaction as the entry; the CHECK keeps
    it at or above zero whatever the code does.
    """

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="wallets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallets")
    balance = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal("0.00"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "user"], name="wallet_one_per_member"),
            models.UniqueConstraint(fields=["cluster", "id"], name="wallet_cluster_id_unique"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.user_id} in {self.cluster_id}: {self.balance}"


class TransactionType(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    BILL_PAYMENT = "bill_payment", "Bill payment"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"


class TransactionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class Transaction(UUIDModel):
    """One ledger entry. Append-only: amount, type, wallet and links never change and
    no row is deleted (a PostgreSQL trigger refuses both); the only permitted update
    is a pending entry settling to completed or failed. A mistake is corrected by a
    new entry — a refund points at the payment it reverses through ``reverses``.

    A member's payment of a bill counts as paid unless a refund that reopened the bill
    (``reopens_bill``: the bill was live when it was refunded) reverses it; they may then
    pay again, the new payment carrying the next ``settlement`` number.

    ``amount`` is signed, as it moves the wallet: deposits and refunds are positive,
    bill payments negative, adjustments either. A wallet's balance is the sum of its
    completed entries; the estate's revenue is minus the sum of its completed bill
    payments and refunds.
    """

    cluster = models.ForeignKey("estates.Cluster", on_delete=models.PROTECT, related_name="+")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions")
    type = models.CharField(max_length=20, choices=TransactionType.choices)
    status = models.CharField(max_length=20, choices=TransactionStatus.choices)
    amount = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    balance_after = models.DecimalField(
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        null=True,
        blank=True,
        help_text="The wallet's balance right after a completed entry; empty otherwise.",
    )
    bill = models.ForeignKey(
        "billing.Bill", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions"
    )
    payer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", help_text="The wallet's owner."
    )
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", help_text="Who asked for the movement."
    )
    reference = models.CharField(max_length=40, editable=False)
    idempotency_key = models.CharField(max_length=128)
    failure_reason = models.CharField(max_length=64, blank=True)
    note = models.TextField(blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="retries")
    reverses = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals")
    settlement = models.IntegerField(
        default=0,
        db_default=0,
        help_text=(
            "On a bill payment: how many of the payer's earlier payments of the bill were refunded "
            "while the bill was live (0 for the first). One completed payment per number."
        ),
    )
    reopens_bill = models.BooleanField(
        default=False,
        db_default=False,
        help_text=(
            "On a refund: the bill was not cancelled, so the payment it reverses no longer counts "
            "as paid and the payer owes the bill again."
        ),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(type__in=TransactionType.values), name="tx_type_valid"),
            models.CheckConstraint(condition=Q(status__in=TransactionStatus.values), name="tx_status_valid"),
            models.CheckConstraint(
                condition=(
                    Q(type="deposit", amount__gt=0)
                    | Q(type="refund", amount__gt=0)
                    | Q(type="bill_payment", amount__lt=0)
                    | (Q(type="adjustment") & ~Q(amount=0))
                ),
                name="tx_amount_sign_matches_type",
            ),
            models.CheckConstraint(
                condition=~Q(type="bill_payment") | Q(bill__isnull=False), name="tx_bill_payment_has_bill"
            ),
            models.CheckConstraint(
                condition=~Q(type="refund") | Q(reverses__isnull=False, bill__isnull=False),
                name="tx_refund_reverses_payment",
            ),
            models.CheckConstraint(
                condition=Q(status="completed", balance_after__isnull=False, balance_after__gte=0)
                | (~Q(status="completed") & Q(balance_after__isnull=True)),
                name="tx_balance_after_on_completed",
            ),
            models.CheckConstraint(condition=~Q(status="failed") | ~Q(failure_reason=""), name="tx_failed_has_reason"),
            models.CheckConstraint(
                condition=Q(settlement=0) | Q(type="bill_payment", settlement__gt=0),
                name="tx_settlement_on_bill_payments",
            ),
            models.CheckConstraint(condition=Q(reopens_bill=False) | Q(type="refund"), name="tx_only_refunds_reopen"),
            # One completed payment per bill, member and settlement, under any concurrency:
            # a member pays a bill again only after a refund that reopened it, with the
            # next number (docs/decisions/0028-refunds-of-live-bills.md).
            models.UniqueConstraint(
                fields=["bill", "payer", "settlement"],
                condition=Q(type="bill_payment", status="completed"),
                name="tx_one_payment_per_bill_member_settlement",
            ),
            # A payment is refunded at most once.
            models.UniqueConstraint(fields=["reverses"], condition=Q(reverses__isnull=False), name="tx_one_reversal"),
            # The database backstop for idempotent money movement: one entry per key
            # per wallet and per person asking (the member paying, the treasurer crediting).
            models.UniqueConstraint(
                fields=["wallet", "initiated_by", "idempotency_key"], name="tx_idempotency_key_per_wallet_initiator"
            ),
            models.UniqueConstraint(fields=["cluster", "reference"], name="tx_reference_unique_in_cluster"),
        ]
        indexes = [
            models.Index(fields=["wallet", "-created_at"], name="tx_wallet_recent_idx"),
            models.Index(fields=["cluster", "-created_at"], name="tx_cluster_recent_idx"),
            # One member's completed bill payments, read from the index alone (the member
            # list's bill summaries): with their ids, which the "paid" fact needs to know
            # no reopening refund reverses them (decision 0028).
            models.Index(
                fields=["payer", "bill"],
                include=["id"],
                name="tx_member_payments_id_idx",
                condition=Q(type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED),
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reference} {self.type} {self.amount} ({self.status})"
