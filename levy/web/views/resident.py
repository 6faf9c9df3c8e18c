"""The resident's pages: their bills, one bill (acknowledge, dispute, pay from the
wallet with a confirmation step); the wallet is ``levy.web.views.wallet``. Every read is a billing or wallet
selector and every write the service the API's resident endpoints call; what a
resident may do with a bill is asked of ``levy.billing.rules``, never decided here.

Money moves once: the pay form carries an idempotency key made when it is rendered,
and ``bill_pay`` — the service behind the API's pay endpoint — returns (or raises)
what the first request with that key did, under the member's wallet lock. A double
tap, a resubmit after a slow answer, a reload or the back button all land on the
first result.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from levy.access import access_bill_as_member
from levy.billing import rules
from levy.billing.models import Bill
from levy.billing.payments import bill_pay
from levy.billing.selectors import (
    estate_today,
    last_reopening_refund,
    live_payment,
    member_bill_disputes,
    member_bill_groups,
    member_bill_with_facts,
)
from levy.billing.services import bill_acknowledge_with_status, bill_dispute
from levy.billing.status import BillStatus
from levy.common import ratelimit
from levy.common.errors import (
    ApplicationError,
    IdempotencyKeyReusedError,
    InsufficientFundsError,
    RuleViolation,
    ValidationError,
)
from levy.payments.providers.base import ProviderError
from levy.payments.selectors import active_provider_account
from levy.payments.services import bill_pay_by_card_start
from levy.wallets.services import member_wallet
from levy.web import format
from levy.web.paging import cursor_values, page_of
from levy.web.views.base import EstatePage
from levy.web.views.wallet import new_key, started_checkout, top_up_return_url

# --- My bills ---------------------------------------------------------------------------------

SETTLED = (BillStatus.PAID.value, BillStatus.WAIVED.value, BillStatus.CANCELLED.value)
# Each section of bills still owed shows the ones due soonest, SECTION_SHOWN of them,
# and links to itself in full (``?all=<section>``); past MAX_OWING bills owed the page
# says so rather than growing without end. A resident usually owes a handful; one who
# owes eighty (the benchmark's data set L) still gets a page that fits a phone and
# draws in its 50 ms.
SECTION_SHOWN = 5
MAX_OWING = 200
SETTLED_PAGE = 10
SETTLED_ORDER = ("-created_at", "-id")
# The sections of bills still owed, and the statuses each lists.
GROUPS = {
    "to-pay": (BillStatus.PENDING.value, BillStatus.ACKNOWLEDGED.value),
    "overdue": (BillStatus.OVERDUE.value,),
    "disputed": (BillStatus.DISPUTED.value,),
}


@dataclass(frozen=True)
class Action:
    label: str
    url: str
    primary: bool = False


@dataclass(frozen=True)
class Section:
    key: str
    heading: str
    empty: str
    bills: list[Any]
    total: int = 0
    all_url: str = ""

    @property
    def more(self) -> int:
        return self.total - len(self.bills)


def bill_url(cluster_id: object, bill: Bill, anchor: str = "") -> str:
    return reverse("web:my-bill", kwargs={"cluster_id": cluster_id, "bill_id": bill.pk}) + anchor


@dataclass(frozen=True)
class BillLinks:
    """The URLs of an estate's bill pages for a list of bills: the list's address is
    reversed once and each bill's built from it (``reverse`` per bill was a tenth of
    My bills' time). ``tests/web/test_resident_pages.py`` holds them to ``reverse``."""

    base: str  # the estate's My bills

    @classmethod
    def of(cls, cluster_id: object) -> BillLinks:
        return cls(reverse("web:my-bills", kwargs={"cluster_id": cluster_id}))

    def bill(self, bill: Bill, anchor: str = "") -> str:
        """``web:my-bill``"""
        return f"{self.base}{bill.pk}/{anchor}"

    def pay(self, bill: Bill) -> str:
        """``web:my-bill-pay``"""
        return f"{self.base}{bill.pk}/pay/"


def bill_item(bill: Any, currency: str, links: BillLinks, today: Any) -> dict[str, Any]:
    """What My bills shows of one bill (``web/resident/bill_item.html``), as plain values:
    a template reads a dictionary's keys far faster than a model's attributes."""
    action = next_action(bill, currency, links)
    status = bill.status
    if status == BillStatus.PAID:
        meta, meta_class = f"paid {format.estate_date(bill.paid_at)}", ""
    elif status in (BillStatus.CANCELLED, BillStatus.WAIVED):
        meta, meta_class = bill.reference, "muted"
    else:
        meta, meta_class = format.due_relative(bill.due_date, today), "overdue" if status == BillStatus.OVERDUE else ""
    return {
        "url": links.bill(bill),
        "title": bill.title,
        "amount": format.money(bill.amount, currency),
        "badge": format.status_badge(status),
        "meta": meta,
        "meta_class": meta_class,
        "action_url": action.url,
        "action_label": action.label,
        "primary": action.primary,
    }


def next_action(bill: Any, currency: str, links: BillLinks) -> Action:
    """The one thing to do next with a bill of ``member_bill_list`` (its ``status``,
    ``can_pay`` and ``acknowledged_at``, as the selector set them)."""
    if bill.can_pay:
        return Action(f"Pay {format.money(bill.amount, currency)}", links.pay(bill), primary=True)
    status = bill.status
    if status in (BillStatus.PENDING, BillStatus.OVERDUE) and bill.acknowledged_at is None:
        return Action("Read and acknowledge", links.bill(bill, "#acknowledge"), primary=True)
    if status == BillStatus.DISPUTED:
        return Action("View your dispute", links.bill(bill, "#dispute"))
    if status == BillStatus.PAID:
        return Action("View receipt", links.bill(bill, "#paid"))
    if status == BillStatus.OVERDUE:
        return Action("Why can't I pay?", links.bill(bill, "#pay"))
    return Action("View", links.bill(bill))


class MyBillsPage(EstatePage):
    """What to pay now first (by due date), then overdue, disputed, and the settled ones
    (paid, waived, cancelled; newest first, a page at a time). The same bills, with the
    same statuses, as the API's ``member_bill_list`` gives, grouped and cut by
    ``member_bill_groups`` (one fixed statement, whole rows only for the bills drawn)."""

    template_name = "web/resident/my_bills.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        currency = self.access.cluster.currency
        expanded = self.request.GET.get("all", "")
        after = cursor_values(self.request, Bill, SETTLED_ORDER)
        found = member_bill_groups(
            access=self.access,
            groups=GROUPS,
            settled=SETTLED,
            shown=SECTION_SHOWN,
            expanded=expanded if expanded in GROUPS else None,
            max_owing=MAX_OWING,
            settled_after=(after[0], after[1]) if after else None,
            settled_size=SETTLED_PAGE,
        )
        settled = page_of(found.settled, size=SETTLED_PAGE, ordering=SETTLED_ORDER, is_first=after is None)
        here = self.request.path

        def section(key: str, heading: str, empty: str) -> Section:
            total, bills = found.groups[key]
            return Section(key, heading, empty, bills, total, f"{here}?all={key}#{key}-heading")

        sections = [
            section("to-pay", "To pay", "Nothing to pay right now."),
            section("overdue", "Overdue", "Nothing overdue."),
            section("disputed", "Disputed", "No open dispute."),
        ]
        # What each bill drawn shows, written once here (the template only places it).
        links, today = BillLinks.of(self.access.cluster.pk), estate_today()
        sections = [replace(s, bills=[bill_item(b, currency, links, today) for b in s.bills]) for s in sections]
        settled = replace(settled, rows=[bill_item(b, currency, links, today) for b in settled.rows])
        context.update(
            sections=sections,
            settled=settled,
            owing_truncated=found.owing > MAX_OWING,
            nothing_owed=not found.owing,
            today=today,
        )
        return context


# --- one bill --------------------------------------------------------------------------------


class DisputeForm(forms.Form):
    reason = forms.CharField(
        label="Why is this bill wrong?",
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The estate's managers read this and answer. You cannot pay the bill while the dispute is open.",
    )


# What to do after each refusal of a payment, in plain words (the refusal's own message
# says why; it comes from ``levy.billing.rules``).
NEXT_STEP = {
    "bill_not_acknowledged": "Read the terms above and press “Acknowledge this bill”, then pay.",
    "bill_disputed": "You can pay once the estate answers your dispute: if they uphold it you owe nothing, "
    "if they reject it you pay as before.",
    "payment_after_due_not_allowed": "Speak to your estate's office about settling it.",
    "bill_already_paid": "Nothing more to do: your receipt is below.",
    "bill_waived": "Nothing to pay: your dispute was upheld.",
    "bill_cancelled": "Nothing to pay.",
}


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    next_step: str

    @classmethod
    def of(cls, error: ApplicationError) -> Refusal:
        return cls(error.code, error.message, NEXT_STEP.get(error.code, ""))


@dataclass(frozen=True)
class Funds:
    balance: Decimal
    amount: Decimal

    @property
    def after(self) -> Decimal:
        return self.balance - self.amount

    @property
    def shortfall(self) -> Decimal:
        return max(Decimal("0.00"), self.amount - self.balance)


class ResidentBillMixin(EstatePage):
    """The bill of the URL, as ``member_bill`` gives it, and what the caller may do with it."""

    def bill_context(self) -> dict[str, Any]:
        bill, facts = member_bill_with_facts(
            access=self.access, bill=access_bill_as_member(self.access, self.kwargs["bill_id"])
        )
        refusal = rules.payment_refusal(bill, facts)
        wallet = member_wallet(access=self.access)
        funds = Funds(balance=wallet.balance, amount=bill.amount)
        payment = refunded = None
        if facts.paid:
            payment = live_payment(bill.pk, self.access.user.pk).first()
        elif facts.payments and bill.cancelled_at is None:
            refunded = last_reopening_refund(bill_id=bill.pk, user_id=self.access.user.pk)
        short = refusal is None and funds.shortfall > 0
        checkout = None
        if short and self.request.GET.get("top_up"):
            checkout = started_checkout(self.access, self.request.GET["top_up"], bill=bill)
        return {
            "bill": bill,
            "card": short and active_provider_account(self.access.cluster.pk) is not None,
            "card_key": new_key("card"),
            "checkout": checkout,
            "refusal": Refusal.of(refusal) if refusal is not None else None,
            "can_acknowledge": not facts.acknowledged and rules.acknowledge_refusal(bill, facts) is None,
            "can_dispute": rules.dispute_refusal(bill, facts) is None,
            "funds": funds,
            "short": short,
            "payment": payment,
            "refunded": refunded,
            "top_up_url": reverse("web:wallet", kwargs={"cluster_id": self.access.cluster.pk}) + "#top-up",
        }

    def limited(self, request: HttpRequest, scope: str) -> str | None:
        """The API's limit on this action, counted on the same counter: a message when hit."""
        wait = ratelimit.check_scope(request, scope)
        if wait is None:
            return None
        return f"Too many attempts in the last minute. Try again in {math.ceil(wait)} seconds."


class MyBillPage(ResidentBillMixin):
    """One of the caller's bills: its terms, acknowledge, dispute (and the dispute's
    answer), what stops a payment and what to do about it, the receipt once paid."""

    template_name = "web/resident/bill.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(self.bill_context())
        context["disputes"] = member_bill_disputes(access=self.access, bill=context["bill"])
        context.setdefault("dispute_form", DisputeForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """``action=acknowledge``, or ``action=dispute`` with a ``reason``."""
        bill = access_bill_as_member(self.access, kwargs["bill_id"])
        action = request.POST.get("action")
        if action not in ("acknowledge", "dispute"):
            messages.error(request, "Choose what to do: acknowledge the bill or dispute it.")
            return HttpResponseRedirect(request.path)
        wait = self.limited(request, action)
        if wait is not None:
            messages.error(request, wait)
            return HttpResponseRedirect(request.path)
        try:
            if action == "acknowledge":
                bill_acknowledge_with_status(access=self.access, bill=bill, origin=self.origin)
                messages.success(request, "Acknowledged. You can now pay it, or dispute it if it is wrong.")
                return HttpResponseRedirect(request.path)
            form = DisputeForm(request.POST)
            if form.is_valid():
                try:
                    bill_dispute(access=self.access, bill=bill, reason=form.cleaned_data["reason"], origin=self.origin)
                except ValidationError as exc:
                    for field, errors in exc.fields.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    messages.success(request, "Dispute sent. The estate's managers will answer it here.")
                    return HttpResponseRedirect(request.path + "#dispute")
            return self.render_to_response(self.get_context_data(dispute_form=form), status=400)
        except RuleViolation as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.path)


class PayForm(forms.Form):
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)


class MyBillPayPage(ResidentBillMixin):
    """The confirmation step of a payment from the wallet: the amount, the balance now
    and after. Its form carries an idempotency key made here, when it is rendered."""

    template_name = "web/resident/pay.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(self.bill_context())
        context.setdefault("form", PayForm(initial={"idempotency_key": f"web-pay-{uuid.uuid4().hex}"}))
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        # The back button asks again (a paid bill then shows its receipt, not a form).
        response["Cache-Control"] = "no-store"
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        bill = access_bill_as_member(self.access, kwargs["bill_id"])
        if request.POST.get("action") == "card":
            return self.pay_by_card(request, bill)
        form = PayForm(request.POST)
        if not form.is_valid():
            form = PayForm(initial={"idempotency_key": f"web-pay-{uuid.uuid4().hex}"})
            return self.failed(form, "The payment form was incomplete. Check the amount and press Pay again.", 400)
        wait = self.limited(request, "pay")
        if wait is not None:
            return self.failed(form, wait, 429)
        try:
            bill_pay(
                access=self.access, bill=bill, idempotency_key=form.cleaned_data["idempotency_key"], origin=self.origin
            )
        except InsufficientFundsError:
            # The failed attempt is on the ledger; the page shows the shortfall from the
            # balance it reads now, and a new key for the next attempt.
            fresh = PayForm(initial={"idempotency_key": f"web-pay-{uuid.uuid4().hex}"})
            return self.failed(fresh, "Your wallet does not have enough money for this bill.", 402)
        except RuleViolation as exc:
            return self.failed(form, exc.message, 409)
        except (IdempotencyKeyReusedError, ValidationError):
            fresh = PayForm(initial={"idempotency_key": f"web-pay-{uuid.uuid4().hex}"})
            return self.failed(fresh, "That payment form had expired. Check the amount and press Pay again.", 422)
        return HttpResponseRedirect(bill_url(self.access.cluster.pk, bill, "#paid"), status=303)

    def pay_by_card(self, request: HttpRequest, bill: Bill) -> HttpResponse:
        """Pay the shortfall by card (``bill_pay_by_card_start``, the API's service): a
        top-up of exactly what the wallet lacks, which pays the bill once the provider
        confirms it. The page then links to the provider's card page."""
        form = PayForm(request.POST)
        fresh = PayForm(initial={"idempotency_key": new_key("pay")})
        if not form.is_valid():
            return self.failed(fresh, "The payment form was incomplete. Press the button again.", 400)
        wait = self.limited(request, "top_up")
        if wait is not None:
            return self.failed(form, wait, 429)
        try:
            top_up = bill_pay_by_card_start(
                access=self.access,
                bill=bill,
                idempotency_key=form.cleaned_data["idempotency_key"],
                origin=self.origin,
                callback_url=top_up_return_url(self.access),
            )
        except RuleViolation as exc:
            return self.failed(fresh, exc.message, 409)
        except ProviderError as exc:
            return self.failed(fresh, exc.message, 503)
        except (IdempotencyKeyReusedError, ValidationError):
            return self.failed(fresh, "That payment form had expired. Press the button again.", 422)
        pay = reverse("web:my-bill-pay", kwargs={"cluster_id": self.access.cluster.pk, "bill_id": bill.pk})
        return HttpResponseRedirect(f"{pay}?top_up={top_up.pk}", status=303)

    def failed(self, form: PayForm, message: str, status: int) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=form, error=message), status=status)
