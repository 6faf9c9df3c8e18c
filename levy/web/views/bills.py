"""The manager's bill pages: the list, a new bill, one bill (its members' statuses,
cancel, edit). Every read is a billing selector, every write a billing service."""

from __future__ import annotations

import datetime
import math
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse

from levy.access import access_bill_as_staff
from levy.billing.late_fees import grace_ends_on, late_fee_amount
from levy.billing.models import BillCategory, LateFeeKind
from levy.billing.selectors import (
    BillFilters,
    BillMemberFilters,
    BillStats,
    bill_detail,
    bill_list,
    bill_member_list,
    billable_member_count,
    estate_today,
)
from levy.billing.services import (
    bill_cancel,
    bill_create_cluster_wide,
    bill_create_user_specific,
    bill_terms_locked,
    bill_update,
)
from levy.billing.status import BillStatus
from levy.billing.validation import MAX_GRACE_DAYS, BillInput
from levy.common import ratelimit
from levy.common.errors import RuleViolation, ValidationError
from levy.estates.permissions import PaymentsPermissions
from levy.reports.exports import Export, bill_members_export, bills_export
from levy.web.charts import stacked_bar
from levy.web.once import submit_once
from levy.web.paging import web_page
from levy.web.views.base import EstatePage
from levy.web.views.exports import ListExport
from levy.web.views.residents import WhoPaysForm, chosen_resident, resident_matches_response

ANY = [("", "Any")]


class BillFilterForm(forms.Form):
    """The list's filters, read from the URL (a filtered list is a link to share)."""

    search = forms.CharField(required=False, max_length=200, label="Search title or reference")
    scope = forms.ChoiceField(
        required=False, choices=[*ANY, ("cluster", "Estate-wide"), ("user", "One resident")], label="For"
    )
    category = forms.ChoiceField(required=False, choices=[*ANY, *BillCategory.choices])
    due_after = forms.DateField(required=False, label="Due from", widget=forms.DateInput(attrs={"type": "date"}))
    due_before = forms.DateField(required=False, label="Due until", widget=forms.DateInput(attrs={"type": "date"}))
    cancelled = forms.ChoiceField(
        required=False,
        choices=[("", "Live and cancelled"), ("no", "Live only"), ("yes", "Cancelled only")],
        label="Cancelled",
    )

    def filters(self) -> BillFilters:
        data = self.cleaned_data if self.is_valid() else {}
        cancelled = {"yes": True, "no": False}.get(data.get("cancelled") or "")
        return BillFilters(
            scope=data.get("scope") or None,
            category=data.get("category") or None,
            due_before=data.get("due_before"),
            due_after=data.get("due_after"),
            cancelled=cancelled,
            search=(data.get("search") or "").strip() or None,
        )


# The segments of a bill's bar, in this order, with their legend words.
BAR_SEGMENTS = (
    ("paid", "Paid"),
    ("acknowledged", "Acknowledged"),
    ("pending", "Pending"),
    ("disputed", "Disputed"),
    ("overdue", "Overdue"),
    ("waived", "Waived"),
)


def bill_bar(stats: BillStats) -> list[Any]:
    """A bill's counts as one bar over its audience. The counters say how many
    acknowledged (ever) and paid; a member who pays has acknowledged, so the
    acknowledged-and-still-owing are ``acknowledged - paid``, bounded by those still
    owing that are neither disputed nor overdue (a member who acknowledged and then
    disputed counts as disputed)."""
    open_ = max(0, stats.eligible - stats.paid - stats.waived - stats.disputed - stats.overdue)
    acknowledged = min(open_, max(0, stats.acknowledged - stats.paid))
    counts = {
        "paid": stats.paid,
        "acknowledged": acknowledged,
        "pending": open_ - acknowledged,
        "disputed": stats.disputed,
        "overdue": stats.overdue,
        "waived": stats.waived,
    }
    return stacked_bar([(name, counts[name]) for name, _ in BAR_SEGMENTS])


class BillListPage(EstatePage):
    template_name = "web/bills/list.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = BillFilterForm(self.request.GET or None)
        page = web_page(bill_list(access=self.access, filters=form.filters()), self.request)
        rows = [(bill, BillStats.of(bill), bill_bar(BillStats.of(bill))) for bill in page.rows]
        context.update(form=form, page=page, rows=rows, legend=BAR_SEGMENTS, filtered=bool(self.request.GET.dict()))
        context["can_create"] = self.access.can(PaymentsPermissions.ManageBill)
        context["export_query"] = self.request.GET.urlencode()
        return context


class BillsExport(ListExport):
    """The bill list as a CSV file, with the page's filters, every bill."""

    def export(self, request: HttpRequest) -> Export:
        return bills_export(access=self.access, filters=BillFilterForm(request.GET or None).filters())


class NewBillForm(WhoPaysForm):
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    category = forms.ChoiceField(choices=BillCategory.choices)
    amount = forms.CharField(
        max_length=20,
        help_text="In the estate's currency, e.g. 15000 or 15000.50.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    due_date = forms.DateField(label="Due date", widget=forms.DateInput(attrs={"type": "date"}))
    allow_payment_after_due = forms.BooleanField(required=False, label="Accept payment after the due date")
    # The late-fee rule (levy.billing.late_fees); checked by the service, like the API's.
    late_fee_kind = forms.ChoiceField(
        choices=[
            ("", "No late fee"),
            (LateFeeKind.FIXED, "A fixed sum"),
            (LateFeeKind.PERCENT, "A percentage of the bill"),
        ],
        required=False,
        initial="",
        widget=forms.RadioSelect,
        label="Late fee",
    )
    late_fee_value = forms.CharField(
        required=False,
        max_length=20,
        label="Fee",
        help_text="An amount in the estate's currency (e.g. 2000), or for a percentage the percent of the bill's "
        "amount (e.g. 5 for 5%).",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    late_fee_grace_days = forms.IntegerField(
        required=False,
        label="Days of grace after the due date",
        help_text="The fee is charged the day after these days have passed.",
        error_messages={"invalid": f"Enter a whole number of days from 0 to {MAX_GRACE_DAYS}."},
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )

    # Made when the form is drawn: a double click or a resubmit issues one bill (levy.web.once).
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["due_date"].widget.attrs["min"] = estate_today().isoformat()
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", f"web-bill-{uuid.uuid4()}")

    def late_fee(self) -> dict[str, Any]:
        """The rule for ``BillInput``: nothing at all when "No late fee" is chosen (what
        was typed in the fee's fields before choosing it is left out)."""
        data = self.cleaned_data
        if not data.get("late_fee_kind"):
            return {}
        return {
            "late_fee_kind": data["late_fee_kind"],
            "late_fee_value": (data.get("late_fee_value") or "").strip(),
            "late_fee_grace_days": data.get("late_fee_grace_days"),
        }


class NewBillPage(EstatePage):
    """A bill for the whole estate or for one resident. The resident is found by name
    or email as you type: the search box asks this same page for its ``residents``
    fragment (htmx), so the search passes the page's own checks."""

    template_name = "web/bills/new.html"
    permission = PaymentsPermissions.ManageBill

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        fragment = resident_matches_response(request, self.access)
        if fragment is not None:
            return fragment
        return self.render_to_response(self.get_context_data(form=NewBillForm(initial={"target": "estate"})))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = NewBillForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            details = {name: value for name, value in data.items() if name != "idempotency_key"}
            try:
                once, made = submit_once(
                    access=self.access,
                    key=data["idempotency_key"],
                    data=details,
                    work=lambda: self.issue(request, form),
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                if once.refused:
                    form.add_error(None, once.refused)
                else:
                    # The first submit made the bill; a second one of the same form gets it.
                    bill_id = (made or once.result or {}).get("bill_id")
                    if bill_id:
                        return HttpResponseRedirect(
                            reverse("web:bill", kwargs={"cluster_id": self.access.cluster.pk, "bill_id": bill_id})
                        )
                    form.add_error(None, "This form was already used. Check the bills list, then fill in a new form.")
        elif "idempotency_key" in form.errors:
            form.add_error(None, "This form is out of date. Check the bills list, then fill in a new form.")
        chosen = chosen_resident(self.access, form.data.get("user_id", ""))
        return self.render_to_response(self.get_context_data(form=form, chosen=chosen), status=400)

    def issue(self, request: HttpRequest, form: NewBillForm) -> dict[str, Any]:
        """Issue the bill of a valid form, once per form (``submit_once`` runs it):
        ``{"bill_id": …}``. A ``ValidationError`` (bad input, or the API's limit on issuing
        bills) releases the form's key, so the corrected form can be sent again."""
        # The API's limit on issuing bills, counted on the same counter.
        wait = ratelimit.check_scope(request, "bill_create")
        if wait is not None:
            raise ValidationError(
                fields={
                    "__all__": [
                        f"You have issued many bills in the last minute. Try again in {math.ceil(wait)} seconds."
                    ]
                }
            )
        data = form.cleaned_data
        bill_input = BillInput(
            title=data["title"],
            description=data["description"],
            category=data["category"],
            amount=data["amount"],
            due_date=data["due_date"],
            allow_payment_after_due=data["allow_payment_after_due"],
            **form.late_fee(),
        )
        user_id = form.chosen_user_id()
        if user_id is not None:
            bill = bill_create_user_specific(access=self.access, user_id=user_id, data=bill_input, origin=self.origin)
        else:
            bill = bill_create_cluster_wide(access=self.access, data=bill_input, origin=self.origin)
        messages.success(request, f"Bill {bill.reference} issued. The residents it applies to are being told.")
        return {"bill_id": str(bill.pk)}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # The audience of an estate-wide bill issued now: the estate's active residents.
        residents = billable_member_count(self.access.cluster)
        context["estate_help"] = (
            f"Applies to the {residents} resident{pluralize(residents)} living in the estate now; "
            "each owes the full amount."
        )
        context["search_url"] = reverse("web:bill-new", kwargs={"cluster_id": self.access.cluster.pk})
        return context


class EditBillForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


class CancelBillForm(forms.Form):
    reason = forms.CharField(
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="The residents who have not paid are told, with this reason.",
    )


STATUS_CHOICES = [("", "Every status"), *BillStatus.choices]


def member_status(request: HttpRequest) -> str | None:
    """The bill page's member filter (``?status=``); none for a status that does not exist."""
    status = request.GET.get("status") or None
    return status if status in BillStatus.values else None


class BillMembersExport(ListExport):
    """One bill's members and their statuses as a CSV file, with the page's filter."""

    def export(self, request: HttpRequest) -> Export:
        bill = bill_detail(bill=access_bill_as_staff(self.access, self.kwargs["bill_id"]))
        return bill_members_export(bill=bill, filters=BillMemberFilters(status=member_status(request)))


class BillPage(EstatePage):
    """One bill: its terms (locked once acknowledged or paid), its members' statuses
    with a filter, and for those who manage bills: edit the title and description,
    cancel with a reason."""

    template_name = "web/bills/detail.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        bill = bill_detail(bill=access_bill_as_staff(self.access, self.kwargs["bill_id"]))
        status = member_status(self.request)
        page = web_page(bill_member_list(bill=bill, filters=BillMemberFilters(status=status)), self.request)
        stats = BillStats.of(bill)
        can_manage = self.access.can(PaymentsPermissions.ManageBill) and bill.cancelled_at is None
        context.update(
            bill=bill,
            stats=stats,
            bar=bill_bar(stats),
            legend=BAR_SEGMENTS,
            terms_locked=bill_terms_locked(bill),
            page=page,
            status=status or "",
            statuses=STATUS_CHOICES,
            can_manage=can_manage,
        )
        if bill.late_fee_kind:
            # What each member still owing is charged, and from which day (the rule's own functions).
            context["late_fee_each"] = late_fee_amount(bill)
            context["late_fee_from"] = grace_ends_on(bill) + datetime.timedelta(days=1)
            # "2.5" rather than "2.50", "100" rather than "100.00".
            context["late_fee_percent"] = f"{bill.late_fee_value:f}".rstrip("0").rstrip(".")
        if can_manage:
            context.setdefault(
                "edit_form", EditBillForm(initial={"title": bill.title, "description": bill.description})
            )
            context.setdefault("cancel_form", CancelBillForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """``action=edit`` (title, description) or ``action=cancel`` (reason)."""
        self.access.require(PaymentsPermissions.ManageBill)
        bill = access_bill_as_staff(self.access, kwargs["bill_id"])
        action = request.POST.get("action")
        extra: dict[str, Any] = {}
        try:
            if action == "edit":
                edit = EditBillForm(request.POST)
                extra["edit_form"] = edit
                if edit.is_valid():
                    bill_update(access=self.access, bill=bill, changes=dict(edit.cleaned_data), origin=self.origin)
                    messages.success(request, "Saved.")
                    return HttpResponseRedirect(request.path)
            elif action == "cancel":
                cancel = CancelBillForm(request.POST)
                extra["cancel_form"] = cancel
                if cancel.is_valid():
                    bill_cancel(access=self.access, bill=bill, reason=cancel.cleaned_data["reason"], origin=self.origin)
                    messages.success(request, "Bill cancelled. The residents who had not paid are being told.")
                    return HttpResponseRedirect(request.path)
            else:
                messages.error(request, "Choose what to do: save the title and description, or cancel the bill.")
                return HttpResponseRedirect(request.path)
        except ValidationError as exc:
            form = extra.get("edit_form") or extra.get("cancel_form")
            for field, errors in exc.fields.items():
                form.add_error(field if form is not None and field in form.fields else None, errors)  # type: ignore[union-attr]
        except RuleViolation as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.path)
        return self.render_to_response(self.get_context_data(**extra), status=400)
