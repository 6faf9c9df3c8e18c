"""The manager's recurring bills (schedules): the list, a new schedule, one schedule
(its terms, the bills it has issued, pause, resume, end). Reads through
``schedule_list`` / ``schedule_detail`` and ``bill_list``, writes through
``schedule_create`` / ``schedule_pause`` / ``schedule_resume`` / ``schedule_end`` — the
API's selectors and services (decision 0023)."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse

from levy.access import access_schedule
from levy.billing.models import BillCategory, BillSchedule, ScheduleFrequency
from levy.billing.schedules import (
    MAX_ISSUE_DAYS_BEFORE,
    ScheduleInput,
    period_due_date,
    period_issue_date,
    period_label,
    schedule_create,
    schedule_end,
    schedule_pause,
    schedule_resume,
)
from levy.billing.selectors import (
    SCHEDULE_STATUSES,
    BillFilters,
    BillStats,
    ScheduleFilters,
    bill_list,
    billable_member_count,
    estate_today,
    schedule_detail,
    schedule_list,
)
from levy.common.errors import RuleViolation, ValidationError
from levy.estates.permissions import PaymentsPermissions
from levy.web.format import estate_date
from levy.web.once import submit_once
from levy.web.paging import web_page
from levy.web.views.base import EstatePage
from levy.web.views.residents import WhoPaysForm, chosen_resident, resident_matches_response

# The list's tabs, in the URL as ``?status=``.
STATUS_TABS = [("", "All"), *((status, status.capitalize()) for status in SCHEDULE_STATUSES)]


def next_bill(schedule: BillSchedule) -> dict[str, Any] | None:
    """The period the schedule issues next (None once it has ended): its label, due date
    and issue date, by the schedule's own calendar."""
    if schedule.ended_at is not None:
        return None
    period = schedule.next_period
    return {
        "label": period_label(schedule, period),
        "due": period_due_date(schedule, period),
        "issued_on": period_issue_date(schedule, period),
    }


class ScheduleListPage(EstatePage):
    template_name = "web/schedules/list.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        status = self.request.GET.get("status", "")
        if status not in SCHEDULE_STATUSES:
            status = ""
        page = web_page(schedule_list(access=self.access, filters=ScheduleFilters(status=status or None)), self.request)
        context.update(
            page=page,
            rows=[(schedule, next_bill(schedule)) for schedule in page.rows],
            status=status,
            tabs=STATUS_TABS,
            can_create=self.access.can(PaymentsPermissions.ManageBill),
        )
        return context


class NewScheduleForm(WhoPaysForm):
    title = forms.CharField(max_length=160, help_text="Each bill's title adds its period, e.g. “(January 2027)”.")
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    category = forms.ChoiceField(choices=BillCategory.choices)
    amount = forms.CharField(
        max_length=20,
        help_text="Of each bill, in the estate's currency, e.g. 15000 or 15000.50.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    frequency = forms.ChoiceField(
        choices=ScheduleFrequency.choices,
        initial=ScheduleFrequency.MONTHLY,
        widget=forms.RadioSelect,
        label="Every",
        error_messages={"required": "Choose how often a bill is issued."},
    )
    first_due_date = forms.DateField(
        label="First due date",
        help_text="Later bills fall due on the same day of the month (or the month's last day when it is shorter).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    issue_days_before = forms.IntegerField(
        initial=14,
        label="Days of notice",
        help_text="Each bill is issued this many days before it is due.",
        error_messages={"invalid": f"Enter a whole number of days from 0 to {MAX_ISSUE_DAYS_BEFORE}."},
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
    allow_payment_after_due = forms.BooleanField(required=False, label="Accept payment after each due date")
    # Made when the form is drawn: a double click or a resubmit creates one schedule (levy.web.once).
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["first_due_date"].widget.attrs["min"] = estate_today().isoformat()
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", f"web-schedule-{uuid.uuid4()}")


class NewSchedulePage(EstatePage):
    """A recurring bill for the whole estate or one resident (found as on the new-bill
    page: the search asks this page for the chooser's ``residents`` fragment)."""

    template_name = "web/schedules/new.html"
    permission = PaymentsPermissions.ManageBill

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        fragment = resident_matches_response(request, self.access)
        if fragment is not None:
            return fragment
        form = NewScheduleForm(initial={"target": "estate", "frequency": ScheduleFrequency.MONTHLY})
        return self.render_to_response(self.get_context_data(form=form))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = NewScheduleForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            details = {name: value for name, value in data.items() if name != "idempotency_key"}
            try:
                once, made = submit_once(
                    access=self.access, key=data["idempotency_key"], data=details, work=lambda: self.create(form)
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                if once.refused:
                    form.add_error(None, once.refused)
                else:
                    # The first submit made the schedule; a second one of the same form gets it.
                    schedule_id = (made or once.result or {}).get("schedule_id")
                    if schedule_id:
                        return HttpResponseRedirect(
                            reverse(
                                "web:schedule",
                                kwargs={"cluster_id": self.access.cluster.pk, "schedule_id": schedule_id},
                            )
                        )
                    form.add_error(None, "This form was already used. Check the list, then fill in a new form.")
        elif "idempotency_key" in form.errors:
            form.add_error(None, "This form is out of date. Check the list, then fill in a new form.")
        chosen = chosen_resident(self.access, form.data.get("user_id", ""))
        return self.render_to_response(self.get_context_data(form=form, chosen=chosen), status=400)

    def create(self, form: NewScheduleForm) -> dict[str, Any]:
        """Create the schedule of a valid form, once per form (``submit_once`` runs it):
        ``{"schedule_id": …}``. A ``ValidationError`` releases the form's key, so the
        corrected form can be sent again."""
        data = form.cleaned_data
        values = ScheduleInput(
            title=data["title"],
            description=data["description"],
            category=data["category"],
            amount=data["amount"],
            allow_payment_after_due=data["allow_payment_after_due"],
            frequency=data["frequency"],
            first_due_date=data["first_due_date"],
            issue_days_before=data["issue_days_before"],
        )
        schedule = schedule_create(access=self.access, data=values, user_id=form.chosen_user_id(), origin=self.origin)
        first = next_bill(schedule)
        if first is not None:
            messages.success(
                self.request,
                f"Schedule created. Its first bill, for {first['label']}, is issued on "
                f"{estate_date(first['issued_on'])} and due on {estate_date(first['due'])}.",
            )
        return {"schedule_id": str(schedule.pk)}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        residents = billable_member_count(self.access.cluster)
        context["estate_help"] = (
            f"Each bill applies to the residents living in the estate when it is issued "
            f"({residents} resident{pluralize(residents)} now); each owes the full amount."
        )
        context["search_url"] = reverse("web:schedule-new", kwargs={"cluster_id": self.access.cluster.pk})
        return context


class EndScheduleForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Reason (optional)",
        help_text="Kept with the schedule for the estate's records.",
    )


class SchedulePage(EstatePage):
    """One schedule: its terms, what it issues next, the bills it has issued; for those
    who manage bills: pause, resume, end (``action`` in the POST)."""

    template_name = "web/schedules/detail.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        found = access_schedule(self.access, self.kwargs["schedule_id"])
        schedule = schedule_detail(access=self.access, schedule=found)
        page = web_page(bill_list(access=self.access, filters=BillFilters(schedule_id=schedule.pk)), self.request)
        can_manage = self.access.can(PaymentsPermissions.ManageBill) and schedule.ended_at is None
        context.update(
            schedule=schedule,
            upcoming=next_bill(schedule),
            page=page,
            bills=[(bill, BillStats.of(bill)) for bill in page.rows],
            can_manage=can_manage,
        )
        if can_manage:
            context.setdefault("end_form", EndScheduleForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """``action=pause``, ``action=resume`` or ``action=end`` (with an optional reason)."""
        self.access.require(PaymentsPermissions.ManageBill)
        schedule = access_schedule(self.access, kwargs["schedule_id"])
        action = request.POST.get("action")
        try:
            if action == "pause":
                schedule_pause(access=self.access, schedule=schedule, origin=self.origin)
                messages.success(request, "Schedule paused.")
            elif action == "resume":
                resumed = schedule_resume(access=self.access, schedule=schedule, origin=self.origin)
                upcoming = next_bill(resumed)
                assert upcoming is not None
                messages.success(
                    request,
                    f"Resumed. The next bill, for {upcoming['label']}, is issued on "
                    f"{estate_date(upcoming['issued_on'])}; periods that fell due while paused are not billed.",
                )
            elif action == "end":
                form = EndScheduleForm(request.POST)
                if not form.is_valid():
                    return self.render_to_response(self.get_context_data(end_form=form), status=400)
                schedule_end(
                    access=self.access, schedule=schedule, reason=form.cleaned_data["reason"], origin=self.origin
                )
                messages.success(request, "Schedule ended.")
            else:
                messages.error(request, "Choose what to do: pause, resume or end the schedule.")
        except ValidationError as exc:
            form = EndScheduleForm(request.POST)
            form.is_valid()
            for field, errors in exc.fields.items():
                form.add_error(field if field in form.fields else None, errors)
            return self.render_to_response(self.get_context_data(end_form=form), status=400)
        except RuleViolation as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(request.path)
