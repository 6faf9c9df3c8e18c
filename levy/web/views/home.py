"""Where each person lands: ``/`` sends them to their estate's landing page."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import NoReverseMatch, reverse

from levy.accounts.models import User
from levy.common.errors import NotFoundError, PermissionDeniedError
from levy.estates.access import access_cluster
from levy.notifications.channels import receipt_path
from levy.notifications.events import NotificationEvents
from levy.notifications.inbox import notification_list, notification_mark_read, notifications_mark_all_read
from levy.notifications.models import Notification
from levy.web import selectors
from levy.web.views.base import EstatePage, last_estate_id, url_if_exists


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

# Where a notification leads: the bill it is about (the resident's page of it, at the
# part the event is about; for the managers' events their bill page, or the dispute),
# the wallet, or the estate.
MANAGER_EVENTS = {NotificationEvents.BILL_ACKNOWLEDGED, NotificationEvents.BILL_DISPUTED}
WALLET_EVENTS = {NotificationEvents.TOP_UP_CREDITED}
BILL_ANCHORS: dict[str, str] = {
    NotificationEvents.PAYMENT_SUCCESSFUL: "#paid",
    NotificationEvents.PAYMENT_FAILED: "#pay",
    NotificationEvents.DISPUTE_RESOLVED: "#dispute",
}


def notification_target(notification: Notification) -> str | None:
    """The page a notification opens, or None when it is about nothing with a page."""
    context = notification.context or {}
    cluster_id = context.get("cluster_id") or notification.cluster_id
    if not cluster_id:
        return None
    bill_id = context.get("bill_id")
    if notification.event == NotificationEvents.BILL_DISPUTED and context.get("dispute_id"):
        found = url_if_exists("web:dispute", cluster_id=cluster_id, dispute_id=context["dispute_id"])
        if found is not None:
            return found
    if bill_id:
        if notification.event in MANAGER_EVENTS:
            return url_if_exists("web:bill", cluster_id=cluster_id, bill_id=bill_id)
        found = url_if_exists("web:my-bill", cluster_id=cluster_id, bill_id=bill_id)
        return found + BILL_ANCHORS.get(notification.event, "") if found is not None else None
    if notification.event in WALLET_EVENTS:
        return url_if_exists("web:wallet", cluster_id=cluster_id)
    return url_if_exists("web:estate", cluster_id=cluster_id)


def _in_last_estate(request: HttpRequest) -> None:
    """Show the header of the estate this browser used last (its name and its pages) on
    a page outside any estate, when the person is still a member of it."""
    last = last_estate_id(request)
    if not last:
        return
    try:
        request.estate_access = access_cluster(cast(User, request.user), last)  # type: ignore[attr-defined]
    except (NotFoundError, PermissionDeniedError):
        return


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    """The person's inbox, newest first, across their estates; POST marks them all read."""
    user = cast(User, request.user)
    if request.method == "POST":
        marked = notifications_mark_all_read(user=user)
        text = f"Marked {marked} notification{pluralize(marked)} read." if marked else "Nothing unread."
        messages.success(request, text)
        return redirect("web:notifications")
    _in_last_estate(request)
    page = Paginator(notification_list(user=user), NOTIFICATIONS_PER_PAGE).get_page(request.GET.get("page"))
    for item in page.object_list:
        item.target = notification_target(item)  # type: ignore[attr-defined]
        item.receipt = receipt_path(item.event, item.context or {})  # type: ignore[attr-defined]
    return render(request, "web/notifications.html", {"page": page})


@login_required
def notification_open(request: HttpRequest, notification_id: str) -> HttpResponse:
    """Open a notification (from the inbox or an email's link, after sign-in): mark it
    read and go to what it is about. Another person's is the 404 page."""
    try:
        item = notification_mark_read(user=cast(User, request.user), notification_id=notification_id)
    except NotFoundError:
        raise Http404 from None
    if request.method == "POST":
        return redirect(f"{reverse('web:notifications')}?{request.GET.urlencode()}")
    return HttpResponseRedirect(notification_target(item) or reverse("web:notifications"))
