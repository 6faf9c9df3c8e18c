"""The manager's disputes: the open queue (the longest waiting first), then the resolved
ones; uphold or reject each with a note. Reads through ``dispute_list``, writes through
``dispute_resolve`` — the API's selector and service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from levy.access import access_dispute
from levy.billing.selectors import DisputeFilters, dispute_list
from levy.billing.services import dispute_resolve
from levy.billing.status import DisputeStatus
from levy.common.errors import RuleViolation, ValidationError
from levy.estates.permissions import PaymentsPermissions
from levy.reports.exports import Export, disputes_export
from levy.web.paging import web_page
from levy.web.views.base import EstatePage, url_if_exists
from levy.web.views.exports import ListExport

# The list's views, in the URL as ``?status=``: (value, label, filters, queue order).
VIEWS: dict[str, tuple[str, DisputeFilters, bool]] = {
    "open": ("Open", DisputeFilters(status=DisputeStatus.OPEN), True),
    "resolved": ("Resolved", DisputeFilters(resolved=True), True),
    "upheld": ("Upheld", DisputeFilters(status=DisputeStatus.UPHELD), True),
    "rejected": ("Rejected", DisputeFilters(status=DisputeStatus.REJECTED), True),
    "all": ("All", DisputeFilters(), False),
}
RECENTLY_RESOLVED = 5


def dispute_view(request: HttpRequest) -> str:
    """The list the URL asks for; the open queue (with the latest decisions under it)
    when it asks for none, or for one that does not exist."""
    status = request.GET.get("status", "")
    return status if status in VIEWS else ""


class ResolveForm(forms.Form):
    resolution = forms.ChoiceField(
        choices=[(DisputeStatus.UPHELD, "Uphold"), (DisputeStatus.REJECTED, "Reject")],
        error_messages={"required": "Choose to uphold or to reject the dispute."},
    )
    note = forms.CharField(
        max_length=5000,
        label="Note to the resident",
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Write a note: the resident reads it with the decision."},
    )


class DisputeListPage(EstatePage):
    template_name = "web/disputes/list.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        view = dispute_view(self.request)
        label, filters, queue = VIEWS[view or "open"]
        page = web_page(dispute_list(access=self.access, filters=filters, queue=queue), self.request)
        recent = []
        if not view:
            latest = dispute_list(access=self.access, filters=DisputeFilters(resolved=True), queue=True)
            recent = list(latest.rows.order_by(*latest.ordering)[:RECENTLY_RESOLVED])
        context.update(
            view=view,
            heading=label,
            page=page,
            recent=recent,
            views=[(value, text) for value, (text, _f, _q) in VIEWS.items()],
            can_resolve=self.access.can(PaymentsPermissions.ManageBill),
            export_query=self.request.GET.urlencode(),
        )
        return context


class DisputesExport(ListExport):
    """The list as a CSV file, with the list's own filter (``?status=``), every row."""

    def export(self, request: HttpRequest) -> Export:
        _label, filters, queue = VIEWS[dispute_view(request) or "open"]
        return disputes_export(access=self.access, filters=filters, queue=queue)


def _back(request: HttpRequest, list_url: str) -> str:
    """Where to go after a decision: the list the form was on (its filters and page), or
    the open queue."""
    back = request.POST.get("back", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return back if safe and back.startswith(list_url) else list_url


class DisputePage(EstatePage):
    """One dispute: its bill, the member, the reason; uphold or reject with a note."""

    template_name = "web/disputes/detail.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        dispute = access_dispute(self.access, self.kwargs["dispute_id"])
        can_resolve = self.access.can(PaymentsPermissions.ManageBill) and dispute.status == DisputeStatus.OPEN
        context.update(
            dispute=dispute,
            can_resolve=can_resolve,
            member_url=url_if_exists("web:member", cluster_id=self.access.cluster.pk, user_id=dispute.user_id),
        )
        if can_resolve:
            context.setdefault("form", ResolveForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.access.require(PaymentsPermissions.ManageBill)
        dispute = access_dispute(self.access, kwargs["dispute_id"])
        list_url = reverse("web:disputes", kwargs={"cluster_id": self.access.cluster.pk})
        form = ResolveForm(request.POST)
        if form.is_valid():
            try:
                resolved = dispute_resolve(
                    access=self.access,
                    dispute=dispute,
                    resolution=form.cleaned_data["resolution"],
                    note=form.cleaned_data["note"],
                    origin=self.origin,
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors)
            except RuleViolation as exc:
                messages.error(request, exc.message)
                return HttpResponseRedirect(_back(request, list_url))
            else:
                who = dispute.user.get_full_name()
                if resolved.status == DisputeStatus.UPHELD:
                    text = f"Dispute upheld: {who} no longer owes {dispute.bill.title}. They are being told."
                else:
                    text = f"Dispute rejected: {who} still owes {dispute.bill.title}. They are being told."
                messages.success(request, text)
                return HttpResponseRedirect(_back(request, list_url))
        return self.render_to_response(self.get_context_data(form=form, back=request.POST.get("back", "")), status=400)
