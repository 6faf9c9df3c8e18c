"""The estate's ledger for its managers: every entry with filters in the URL (type,
status, member, dates), one entry on its own page, and refunding a bill payment to the
payer's wallet. Reads through ``transaction_list`` and
``access_transaction``, refunds through ``bill_payment_refund`` — the API's selector,
access helper and service."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from levy.access import access_transaction
from levy.billing.payments import bill_payment_refund, refund_refusal
from levy.common.errors import RuleViolation, ValidationError
from levy.common.listing import Listing
from levy.estates.permissions import PaymentsPermissions
from levy.reports.exports import Export, transactions_export
from levy.wallets.models import Transaction, TransactionStatus, TransactionType
from levy.wallets.selectors import TransactionFilters, transaction_list
from levy.web.paging import web_page
from levy.web.views.base import EstatePage, url_if_exists
from levy.web.views.exports import ListExport

ANY = [("", "Any")]


class TransactionFilterForm(forms.Form):
    """The ledger's filters, read from the URL (a filtered ledger is a link to share)."""

    search = forms.CharField(required=False, max_length=200, label="Member name or email")
    type = forms.ChoiceField(required=False, choices=[*ANY, *TransactionType.choices])
    status = forms.ChoiceField(required=False, choices=[*ANY, *TransactionStatus.choices])
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}), help_text="First day, included."
    )
    created_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}), help_text="Last day, included."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The last day must be on or after the first day.")
        return data

    def filters(self) -> TransactionFilters:
        """The filters that are valid (a bad one is reported on its field and left out)."""
        if not self.is_bound:
            return TransactionFilters()
        self.is_valid()
        data = {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
        return TransactionFilters(
            type=data.get("type") or None,
            status=data.get("status") or None,
            search=(data.get("search") or "").strip() or None,
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )


def with_people(listing: Listing[Transaction]) -> Listing[Transaction]:
    """The listing with each entry's payer, bill and card top-up read in the same
    statement (the page shows their names, and names a card top-up as one)."""
    return Listing(listing.rows.select_related("payer", "bill", "top_up"), listing.ordering, listing.decorate)


class TransactionListPage(EstatePage):
    template_name = "web/transactions/list.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = TransactionFilterForm(self.request.GET or None)
        listing = with_people(transaction_list(access=self.access, filters=form.filters()))
        context.update(
            form=form,
            page=web_page(listing, self.request),
            filtered=any(self.request.GET.get(name) for name in form.fields),
            export_query=self.request.GET.urlencode(),
        )
        return context


class TransactionsExport(ListExport):
    """The ledger as a CSV file, with the page's filters, every entry."""

    def export(self, request: HttpRequest) -> Export:
        filters = TransactionFilterForm(request.GET or None).filters()
        return transactions_export(access=self.access, filters=filters)


class RefundForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="The payer reads it with the refund, and it stays on the ledger.",
        error_messages={"required": "Give a reason: the payer reads it with the refund."},
    )
    # Made when the form is drawn: a double click, a resubmit or the back button refunds once.
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)


class TransactionPage(EstatePage):
    """One ledger entry; for a completed bill payment, refund it to the wallet."""

    template_name = "web/transactions/detail.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        tx = access_transaction(self.access, self.kwargs["transaction_id"])
        reversals = list(Transaction.objects.filter(reverses=tx).only("id", "reference", "created_at"))
        refusal = refund_refusal(tx, refunded=bool(reversals))
        can_refund = refusal is None and self.access.can(PaymentsPermissions.ManageTransaction)
        cluster_id = self.access.cluster.pk
        context.update(
            tx=tx,
            reversals=reversals,
            refund_amount=-tx.amount,
            size=abs(tx.amount),
            refusal=refusal if tx.type == TransactionType.BILL_PAYMENT else None,
            can_refund=can_refund,
            # A refund of a live bill's payment leaves the payer owing the bill again.
            reopens=tx.bill is not None and tx.bill.cancelled_at is None,
            payer=tx.payer,
            member_url=url_if_exists("web:member", cluster_id=cluster_id, user_id=tx.payer_id),
            receipt_url=(
                reverse("management-transaction-receipt", kwargs={"cluster_id": cluster_id, "transaction_id": tx.pk})
                if tx.status == TransactionStatus.COMPLETED
                and tx.type in (TransactionType.BILL_PAYMENT, TransactionType.DEPOSIT)
                else None
            ),
        )
        if can_refund:
            context.setdefault("form", RefundForm(initial={"idempotency_key": f"web-refund-{uuid.uuid4()}"}))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.access.require(PaymentsPermissions.ManageTransaction)
        payment = access_transaction(self.access, kwargs["transaction_id"])
        started = timezone.now()
        form = RefundForm(request.POST)
        if form.is_valid():
            try:
                refund = bill_payment_refund(
                    access=self.access,
                    payment=payment,
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    note=form.cleaned_data["reason"],
                    origin=self.origin,
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields and field != "idempotency_key" else None, errors)
            except RuleViolation as exc:
                messages.error(request, exc.message)
                return HttpResponseRedirect(request.path)
            else:
                # A second submit of the same form (a double click, the back button) gets
                # the first refund back from the service, and the same page; the line
                # saying it was refunded is added once, by the submit that refunded.
                if refund.created_at >= started:
                    owes = " The bill is not cancelled: they owe it again." if refund.reopens_bill else ""
                    messages.success(
                        request,
                        f"Refunded to {payment.payer.get_full_name()}'s wallet. They are being told, with your reason."
                        + owes,
                    )
                return HttpResponseRedirect(
                    reverse(
                        "web:transaction", kwargs={"cluster_id": self.access.cluster.pk, "transaction_id": refund.pk}
                    )
                )
        return self.render_to_response(self.get_context_data(form=form), status=400)
