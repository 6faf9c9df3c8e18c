"""Where each person lands: ``/`` sends them to their estate's landing page."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

from levy.accounts.models import User
from levy.web import selectors
from levy.web.views.base import EstatePage, last_estate_id


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """``/``: the estate used last (if the person is still in it), else their first
    estate; the platform operator without an estate goes to the Django admin."""
    user = cast(User, request.user)
    estates = selectors.person_estates(user)
    if not estates:
        if user.is_superuser:
            return redirect("admin:index")
        return render(request, "web/no_estate.html")
    last = last_estate_id(request)
    chosen = next((m for m in estates if str(m.cluster_id) == last), estates[0])
    return redirect("web:estate", cluster_id=chosen.cluster_id)


def resident_landing(cluster_id: object) -> str:
    """A resident's landing page: "My bills" (``web:my-bills``) where it exists, else the inbox."""
    try:
        return reverse("web:my-bills", kwargs={"cluster_id": cluster_id})
    except NoReverseMatch:
        return reverse("web:notifications")


class EstateLanding(EstatePage):
    """``/estates/<id>/``: managers to the dashboard, residents to their bills. Visiting
    it makes it the estate ``/`` opens next time (the switcher's links lead here)."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        cluster_id = self.access.cluster.pk
        if self.access.can_read_finances():
            return HttpResponseRedirect(reverse("web:dashboard", kwargs={"cluster_id": cluster_id}))
        return HttpResponseRedirect(resident_landing(cluster_id))


NOTIFICATIONS_PER_PAGE = 25


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    """The person's inbox, newest first, across their estates."""
    user = cast(User, request.user)
    page = Paginator(selectors.notification_inbox(user), NOTIFICATIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "web/notifications.html", {"page": page})
