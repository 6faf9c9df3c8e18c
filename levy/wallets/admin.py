"""Wallets and the ledger in the Django admin: view-only.

Money moves only through the wallet services (a conditional UPDATE of the balance
and a ledger entry in one transaction); the ledger is append-only. So a wallet's
balance and every ledger entry can be looked at here, never written.
"""

from __future__ import annotations

from django.contrib import admin

from levy.common.admin import ViewOnlyModelAdmin, changelist_link
from levy.wallets.models import Transaction, Wallet


@admin.register(Wallet)
class WalletAdmin(ViewOnlyModelAdmin):
    list_display = ("user", "cluster", "balance_display", "updated_at")
    list_filter = ("cluster",)
    list_select_related = ("user", "cluster")
    search_fields = ("user__email", "user__name", "cluster__name")
    fields = ("cluster", "user", "balance_display", "created_at", "updated_at", "ledger_link")
    readonly_fields = ("balance_display", "ledger_link")

    @admin.display(description="Balance", ordering="balance")
    def balance_display(self, obj: Wallet) -> str:
        return f"{obj.cluster.currency} {obj.balance:,.2f}"

    @admin.display(description="Ledger")
    def ledger_link(self, obj: Wallet) -> str:
        return changelist_link(Transaction, "Ledger entries of this wallet", wallet__exact=obj.pk)


@admin.register(Transaction)
class TransactionAdmin(ViewOnlyModelAdmin):
    list_display = (
        "reference",
        "created_at",
        "type",
        "status",
        "amount_display",
        "balance_after",
        "payer",
        "bill",
        "cluster",
        "failure_reason",
    )
    list_filter = ("type", "status", "cluster")
    list_select_related = ("payer", "bill", "cluster")
    search_fields = ("reference", "idempotency_key", "payer__email", "bill__reference")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "reference",
        "created_at",
        "cluster",
        "wallet",
        "type",
        "status",
        "amount_display",
        "balance_after",
        "bill",
        "payer",
        "initiated_by",
        "idempotency_key",
        "failure_reason",
        "note",
        "retry_of",
        "reverses",
    )
    readonly_fields = ("amount_display",)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Transaction) -> str:
        return f"{obj.cluster.currency} {obj.amount:,.2f}"
