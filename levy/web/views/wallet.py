"""The resident's wallet: balance, history, a top-up by card and the return from the
provider's checkout; and the helpers of a top-up that the bill pages share (a started
checkout, the return address, the form keys). Reads are wallet and payments selectors,
writes the services the API's top-up endpoints call."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from levy.billing.models import Bill
from levy.common import ratelimit
from levy.common.errors import (
    IdempotencyKeyReusedError,
    NotFoundError,
    RuleViolation,
    ValidationError,
)
from levy.common.listing import Listing
from levy.payments.models import TopUpStatus
from levy.payments.providers.base import ProviderError
from levy.payments.selectors import access_own_top_up, access_own_top_up_by_reference, active_provider_account
from levy.payments.services import topup_return, topup_start
from levy.wallets.models import TransactionStatus
from levy.wallets.selectors import member_transaction_list
from levy.wallets.services import member_wallet
from levy.web import format
from levy.web.paging import web_page
from levy.web.views.base import EstatePage
from levy.web.views.statements import statement_form


def started_checkout(access: Any, top_up_id: str, *, bill: Bill | None = None) -> Any:
    """The caller's own top-up (``?top_up=`` after starting one) if it still waits for
    the card payment, and is for ``bill`` when one is given; else None."""
    try:
        started = access_own_top_up(access, top_up_id)
    except NotFoundError:
        return None
    if started.status != TopUpStatus.PENDING or not started.checkout_url:
        return None
    if bill is not None and started.bill_id != bill.pk:
        return None
    return started


def top_up_return_url(access: Any) -> str:
    """Where the provider sends the resident back after a card payment."""
    path = reverse("web:top-up-return", kwargs={"cluster_id": access.cluster.pk})
    return str(settings.LEVY_PUBLIC_URL).rstrip("/") + path


def new_key(kind: str) -> str:
    return f"web-{kind}-{uuid.uuid4().hex}"


class TopUpForm(forms.Form):
    amount = forms.CharField(
        label="Amount to add",
        max_length=20,
        help_text="In the estate's currency, e.g. 15000 or 15000.50. You pay it by card on the next page.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)


TOP_UP_OUTCOMES = {
    TopUpStatus.CREDITED: (messages.SUCCESS, "Your top-up of {amount} is in your wallet."),
    TopUpStatus.PENDING: (
        messages.WARNING,
        "Your top-up of {amount} is not confirmed yet. It shows in your balance as soon as the provider confirms it.",
    ),
    TopUpStatus.EXPIRED: (
        messages.WARNING,
        "Your top-up of {amount} was not completed in time. If you were charged, it is credited when the "
        "provider confirms it.",
    ),
    TopUpStatus.MISMATCH: (
        messages.ERROR,
        "The provider reported a different amount than {amount}: nothing was credited. The estate's treasurer "
        "has been told and will sort it out.",
    ),
    TopUpStatus.FAILED: (messages.ERROR, "The top-up of {amount} did not start: nothing was charged. Try again."),
}


# What the wallet's history shows of each entry, its bill and its top-up (``entry_label``
# asks only whether there is one): the rest of the three rows is not read.
WALLET_ROW_FIELDS = (
    "id",
    "type",
    "status",
    "amount",
    "balance_after",
    "reference",
    "failure_reason",
    "created_at",
    "bill__title",
    "top_up__id",
)


def ledger_item(tx: Any, currency: str) -> dict[str, Any]:
    """What the wallet's history shows of one entry, as plain values (a template reads a
    dictionary's keys far faster than a model's attributes)."""
    what = format.entry_label(tx)
    if tx.bill is not None:
        what = f"{what}: {tx.bill.title}"
    pending = tx.status != TransactionStatus.COMPLETED
    return {
        "status": tx.status,
        "what": what,
        "badge": tx.get_status_display() if pending else "",
        "badge_class": "overdue" if tx.status == TransactionStatus.FAILED else "pending",
        "iso": timezone.localtime(tx.created_at).isoformat(),
        "when": format.estate_datetime(tx.created_at),
        "reference": tx.reference,
        "short": tx.failure_reason == "insufficient_funds",
        "direction": "out" if tx.amount < 0 else "in",
        "amount": ("+" if tx.amount > 0 else "") + format.money(tx.amount, currency),
        "balance": None if tx.balance_after is None else format.money(tx.balance_after, currency),
    }


class WalletPage(EstatePage):
    """The caller's wallet: balance, their ledger entries newest first a page at a time,
    and a top-up through the estate's payment provider when it has one."""

    template_name = "web/resident/wallet.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        wallet = member_wallet(access=self.access)
        listing = member_transaction_list(access=self.access)
        # Each entry names its bill, and a deposit its top-up by card: read with the page,
        # not one query per row.
        rows = listing.rows.select_related("bill", "top_up").only(*WALLET_ROW_FIELDS)
        page = web_page(Listing(rows, listing.ordering, listing.decorate), self.request)
        currency = self.access.cluster.currency
        page = replace(page, rows=[ledger_item(tx, currency) for tx in page.rows])
        context.update(
            wallet=wallet,
            page=page,
            can_top_up=active_provider_account(self.access.cluster.pk) is not None,
            statement_form=statement_form(),
            statement_url=reverse("web:wallet-statement", kwargs={"cluster_id": self.access.cluster.pk}),
        )
        if self.request.GET.get("top_up"):
            context["checkout"] = started_checkout(self.access, self.request.GET["top_up"])
        if context["can_top_up"]:
            initial = {"idempotency_key": new_key("top-up")}
            if self.request.GET.get("amount"):
                initial["amount"] = self.request.GET["amount"][:20]
            context.setdefault("top_up_form", TopUpForm(initial=initial))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Start a top-up (``topup_start``, the API's service) and go to the provider's checkout."""
        self.access.require_member()
        form = TopUpForm(request.POST)
        wait = ratelimit.check_scope(request, "top_up")
        if wait is not None:
            form.is_valid()
            form.add_error(None, f"Too many top-ups in the last minute. Try again in {math.ceil(wait)} seconds.")
        elif form.is_valid():
            callback = top_up_return_url(self.access)
            try:
                top_up = topup_start(
                    access=self.access,
                    amount=form.cleaned_data["amount"].strip(),
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    origin=self.origin,
                    callback_url=callback,
                )
            except ValidationError as exc:
                for errors in exc.fields.values():
                    form.add_error("amount", errors)
                if not exc.fields:
                    form.add_error("amount", exc.message)
            except IdempotencyKeyReusedError:
                form = TopUpForm(initial={"amount": form.cleaned_data["amount"], "idempotency_key": new_key("top-up")})
                form.is_valid()
                form.add_error(None, "That form was already used for another amount. Check the amount and continue.")
            except (RuleViolation, ProviderError) as exc:
                form.add_error(None, exc.message)
            else:
                # To the provider through a link on the wallet (the pages' Content-Security-Policy
                # lets a form post only to this site, and a redirect after a post counts).
                wallet = reverse("web:wallet", kwargs={"cluster_id": self.access.cluster.pk})
                return HttpResponseRedirect(f"{wallet}?top_up={top_up.pk}#top-up", status=303)
        return self.render_to_response(self.get_context_data(top_up_form=form), status=400)


class TopUpReturnPage(EstatePage):
    """Where the provider sends the resident back after checkout: verify the top-up now
    (``topup_return``, as the API's return endpoint does) and show the wallet with the
    outcome. Only the caller's own top-up is looked at."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference = request.GET.get("reference") or request.GET.get("tx_ref") or ""
        own = access_own_top_up_by_reference(self.access, reference)
        top_up = topup_return(reference=own.reference)
        amount = format.money(top_up.amount, top_up.currency)
        cluster_id = self.access.cluster.pk
        if top_up.bill_id is not None:
            # Paid by card for a bill: back to the bill, which shows whether it is paid.
            bill_page = reverse("web:my-bill", kwargs={"cluster_id": cluster_id, "bill_id": top_up.bill_id})
            if top_up.status == TopUpStatus.CREDITED and top_up.bill_outcome == "paid":
                messages.success(request, f"Your card payment of {amount} arrived and the bill is paid.")
                return HttpResponseRedirect(bill_page + "#paid")
            if top_up.status == TopUpStatus.CREDITED:
                messages.warning(
                    request,
                    f"Your card payment of {amount} is in your wallet, but the bill could not be paid now: "
                    "see below why.",
                )
                return HttpResponseRedirect(bill_page + "#pay")
        level, text = TOP_UP_OUTCOMES.get(TopUpStatus(top_up.status), TOP_UP_OUTCOMES[TopUpStatus.PENDING])
        messages.add_message(request, level, text.format(amount=amount))
        if top_up.bill_id is not None:
            return HttpResponseRedirect(
                reverse("web:my-bill", kwargs={"cluster_id": cluster_id, "bill_id": top_up.bill_id})
            )
        return HttpResponseRedirect(reverse("web:wallet", kwargs={"cluster_id": cluster_id}))
