"""Adding members: one by one (``member_add``) or from a CSV file (``member_import_start``
and the ``members_import`` job) — the API's services. Whoever is added without a way to
sign in gets an invitation email to choose a password."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from levy.access import access_member_import
from levy.common.errors import ValidationError
from levy.estates.models import MemberImport
from levy.estates.permissions import MembersPermissions, Role
from levy.members.imports import MAX_IMPORT_BYTES, member_import_start, recent_member_imports
from levy.members.services import member_add
from levy.web.views.base import EstatePage, htmx_partial, url_if_exists


class NewMemberForm(forms.Form):
    name = forms.CharField(max_length=200, label="Full name")
    email = forms.EmailField(max_length=254, help_text="They sign in with it, and get their invitation there.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.RESIDENT)
    lives_here = forms.ChoiceField(
        label="Lives in the estate",
        choices=[("yes", "Yes"), ("no", "No")],
        initial="yes",
        help_text="Those who live in the estate owe its estate-wide bills; staff who live elsewhere do not.",
    )


class NewMemberPage(EstatePage):
    template_name = "web/members/new.html"
    permission = MembersPermissions.ManageMembers

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", NewMemberForm())
        context["members_url"] = url_if_exists("web:members", cluster_id=self.access.cluster.pk)
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = NewMemberForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                membership = member_add(
                    access=self.access,
                    email=data["email"],
                    name=data["name"],
                    role=data["role"],
                    is_resident=data["lives_here"] == "yes",
                    origin=self.origin,
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                # The name typed here: an existing account's own name is theirs to show.
                who = f"{data['name'].strip()} ({membership.user.email})"
                role = Role(membership.role).label
                if membership.user.has_usable_password():
                    text = f"{who} added as {role}. They already have a Levy account and sign in with it."
                else:
                    text = f"{who} added as {role}. They have been emailed a link to choose a password."
                messages.success(request, text)
                cluster_id = self.access.cluster.pk
                member_url = url_if_exists("web:member", cluster_id=cluster_id, user_id=membership.user_id)
                return HttpResponseRedirect(member_url or request.path)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 text, at most 5 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
        error_messages={"required": "Choose the CSV file to import."},
    )


class ImportMembersPage(EstatePage):
    """Upload a members CSV: it is stored and imported by a background job; the import's
    own page follows it."""

    template_name = "web/members/import.html"
    permission = MembersPermissions.ManageMembers

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", ImportForm())
        context["recent"] = recent_member_imports(access=self.access)
        context["members_url"] = url_if_exists("web:members", cluster_id=self.access.cluster.pk)
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size is not None and upload.size > MAX_IMPORT_BYTES:
                    raise ValidationError(fields={"file": ["The file is larger than 5 MB."]})
                job = member_import_start(
                    access=self.access, file_name=upload.name or "", content=upload.read(), origin=self.origin
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                return HttpResponseRedirect(
                    reverse("web:member-import", kwargs={"cluster_id": self.access.cluster.pk, "import_id": job.pk})
                )
        return self.render_to_response(self.get_context_data(form=form), status=400)


RUNNING = (MemberImport.Status.QUEUED, MemberImport.Status.VALIDATING, MemberImport.Status.IMPORTING)


class MemberImportPage(EstatePage):
    """One import: its progress while it runs (the page asks itself for its ``progress``
    fragment every second), then what it did, or each bad line with what is wrong."""

    template_name = "web/members/import_result.html"
    permission = MembersPermissions.ManageMembers

    def get_template_names(self) -> list[str]:
        return [htmx_partial(self.request, self.template_name, "progress")]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        job = access_member_import(self.access, self.kwargs["import_id"])
        checked = job.total_lines if job.status == MemberImport.Status.SUCCEEDED else job.processed_lines
        context.update(
            job=job,
            running=job.status in RUNNING,
            checked=min(checked, job.total_lines),
            more_errors=max(0, job.error_count - len(job.errors)),
            members_url=url_if_exists("web:members", cluster_id=self.access.cluster.pk),
        )
        return context
