"""Wallet statements on the pages: a member's, for the estate's staff (from the member's
page), and one's own (from the wallet). A period form that downloads the PDF or the CSV;
the period rule (``statement_period``), the read (``member_statement``) and the files
(``levy.reports.files``) are the API's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from levy.access import access_membership
from levy.common.errors import ValidationError
from levy.estates.models import Membership
from levy.reports.files import STATEMENT_FORMATS, statement_file
from levy.reports.selectors import member_statement, statement_period
from levy.web.views.base import EstatePage


def _day_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class StatementForm(forms.Form):
    """The period (both days included; blank: this month so far) and the file's format,
    sent by the button that was pressed."""

    start = forms.DateField(
        required=False, label="First day", widget=_day_input(), error_messages={"invalid": "Enter a date."}
    )
    end = forms.DateField(
        required=False, label="Last day", widget=_day_input(), error_messages={"invalid": "Enter a date."}
    )
    format = forms.ChoiceField(
        required=False,
        choices=[(f, f.upper()) for f in STATEMENT_FORMATS],
        error_messages={"invalid_choice": "Choose the PDF or the CSV file."},
    )


def statement_form(data: Any = None) -> StatementForm:
    """A period form; unbound, it shows the default period (this month so far)."""
    start, end = statement_period(None, None)
    return StatementForm(data or None, initial={"start": start, "end": end})


class StatementPage(EstatePage):
    """The period form for one member's statement; with ``format`` in a valid request,
    the file itself. A period the rule refuses is explained next to its field."""

    template_name = "web/statement.html"

    def membership(self) -> Membership:
        raise NotImplementedError

    def back(self, membership: Membership) -> tuple[str, str]:
        """The page the statement form is on: (its URL, its name)."""
        raise NotImplementedError

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = self.membership()
        form = statement_form(request.GET)
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                start, end = statement_period(data["start"], data["end"])
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field, errors)
            else:
                if data["format"]:
                    statement = member_statement(access=self.access, membership=membership, start=start, end=end)
                    return statement_file(statement, data["format"])
        back_url, back_name = self.back(membership)
        context = self.get_context_data(
            member=membership, statement_form=form, statement_url=request.path, back_url=back_url, back_name=back_name
        )
        return self.render_to_response(context, status=400 if form.errors else 200)


class MemberStatementPage(StatementPage):
    """A member's statement, for those who read the estate's finances (as the API's
    ``members/<user_id>/statement.pdf``)."""

    finances = True

    def membership(self) -> Membership:
        return access_membership(self.access, self.kwargs["user_id"])

    def back(self, membership: Membership) -> tuple[str, str]:
        url = reverse("web:member", kwargs={"cluster_id": self.access.cluster.pk, "user_id": membership.user_id})
        return url, membership.user.get_full_name() or membership.user.email


class WalletStatementPage(StatementPage):
    """The caller's own statement (as the API's ``wallet/statement.pdf``)."""

    def membership(self) -> Membership:
        membership = self.access.require_member()
        membership.user = self.access.user
        return membership

    def back(self, membership: Membership) -> tuple[str, str]:
        return reverse("web:wallet", kwargs={"cluster_id": self.access.cluster.pk}), "Wallet"
