"""Choosing one resident on a form (a bill or a schedule for one resident): the search
by name or email as you type, and the resident already chosen when a form comes back
with an error.

The search box asks the form's own page for the ``residents`` fragment of
``web/resident_chooser.html`` (htmx), so the search passes exactly that page's checks.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from levy.access import access_membership
from levy.billing.selectors import MemberFilters, member_list
from levy.common.errors import NotFoundError
from levy.estates.access import EstateAccess
from levy.estates.models import Membership

RESIDENT_MATCHES = 8
CHOOSER = "web/resident_chooser.html"


def resident_matches(access: EstateAccess, query: str) -> dict[str, Any]:
    """At most ``RESIDENT_MATCHES`` active residents whose name or email contains the
    query (2 letters at least)."""
    term = query.strip()
    if len(term) < 2:
        return {"query": term, "matches": []}
    # Anyone who lives in the estate may be billed (a treasurer who is also a resident too).
    listing = member_list(access=access, filters=MemberFilters(active=True, search=term))
    matches = list(listing.rows.filter(is_resident=True).order_by("user__name", "id")[:RESIDENT_MATCHES])
    return {"query": term, "matches": matches}


def resident_matches_response(request: HttpRequest, access: EstateAccess) -> HttpResponse | None:
    """The ``residents`` fragment when this is the search box asking (htmx, ``?q=``)."""
    if getattr(request, "htmx", False) and "q" in request.GET:
        return render(request, f"{CHOOSER}#residents", resident_matches(access, request.GET.get("q", "")))
    return None


def chosen_resident(access: EstateAccess, user_id: object) -> Membership | None:
    """The member a returned form had chosen (None when it is not one of this estate's)."""
    if not user_id:
        return None
    try:
        return access_membership(access, user_id)
    except NotFoundError:
        return None


class WhoPaysForm(forms.Form):
    """The "who pays it" part of a new bill's or schedule's form: the whole estate, or
    one resident chosen with the search above (their id in ``user_id``)."""

    target = forms.ChoiceField(
        choices=[("estate", "Everyone in the estate"), ("resident", "One resident")],
        initial="estate",
        widget=forms.RadioSelect,
        label="Who pays it",
    )
    user_id = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("target") == "resident" and not data.get("user_id"):
            self.add_error("user_id", "Find the resident by name or email and choose them.")
        return data

    def chosen_user_id(self) -> Any:
        """The resident who pays, or None for the whole estate (a valid form)."""
        data = self.cleaned_data
        return data["user_id"] if data["target"] == "resident" else None
