"""The base of every estate page: :class:`EstatePage`.

A page under ``/estates/<cluster_id>/`` resolves the caller's access to that estate
with the same helper as the API (``levy.estates.access.access_cluster``) before its
handler runs, and fetches every object through the same access helpers
(``access_bill_as_staff``, ``access_membership``, …). Not a member of the estate, or an
object of another estate: the 404 page, the same as for something that does not
exist. A member without the page's permission: the 403 page.

``tests/web/test_page_isolation.py`` walks the URL configuration: a page added under
``/estates/<cluster_id>/`` without an entry in its recipes fails it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.signing import BadSignature
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch, reverse
from django.views.generic import TemplateView

from levy.common.errors import NotFoundError, PermissionDeniedError
from levy.common.origin import Origin, origin_of
from levy.estates.access import EstateAccess, access_cluster
from levy.estates.permissions import Permission

LAST_ESTATE_COOKIE = "levy_estate"
LAST_ESTATE_SALT = "levy.web.last-estate"
LAST_ESTATE_MAX_AGE = 365 * 24 * 3600


def last_estate_id(request: HttpRequest) -> str | None:
    """The estate this browser used last (a signed cookie; checked against the person's
    memberships before it is used)."""
    try:
        value = request.get_signed_cookie(LAST_ESTATE_COOKIE, default=None, salt=LAST_ESTATE_SALT)
    except BadSignature:
        return None
    return str(value) if value else None


def remember_estate(request: HttpRequest, response: HttpResponseBase, cluster_id: object) -> None:
    if last_estate_id(request) != str(cluster_id):
        response.set_signed_cookie(
            LAST_ESTATE_COOKIE,
            str(cluster_id),
            salt=LAST_ESTATE_SALT,
            max_age=LAST_ESTATE_MAX_AGE,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )


class EstatePage(TemplateView):
    """A page of one estate. Set ``template_name``, and who may see it:

    - ``finances = True``: staff who may read the estate's finances (admin, treasurer,
      auditor) — the manager pages;
    - ``permission = PaymentsPermissions.ManageBill`` (or another): only those who hold it
      (pages that write);
    - neither: any member of the estate (the resident pages).

    ``self.access`` is the caller's :class:`EstateAccess`; ``self.origin`` what a
    service records as where the action came from. Raise ``NotFoundError`` or
    ``PermissionDeniedError`` (or call the access helpers, which do) anywhere in a
    handler: they become the 404 and 403 pages.
    """

    finances: ClassVar[bool] = False
    permission: ClassVar[Permission | None] = None
    access: EstateAccess

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            self.access = access_cluster(request.user, kwargs.get("cluster_id"))
            request.estate_access = self.access  # type: ignore[attr-defined]  # the layout reads it
            if self.finances:
                self.access.require_read_finances()
            if self.permission is not None:
                self.access.require(self.permission)
            response = super().dispatch(request, *args, **kwargs)
        except NotFoundError:
            raise Http404 from None
        except PermissionDeniedError:
            raise PermissionDenied from None
        if self.access.membership is not None:
            remember_estate(request, response, self.access.cluster.pk)
        return response

    @property
    def origin(self) -> Origin:
        return origin_of(self.request)

    @property
    def estate(self) -> Any:
        return self.access.cluster

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["access"] = self.access
        context["estate"] = self.access.cluster
        context["currency"] = self.access.cluster.currency
        return context


def url_if_exists(name: str, **kwargs: Any) -> str | None:
    """The URL of a page that may not exist yet (another area's page), or None."""
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return None


def htmx_partial(request: HttpRequest, template: str, partial: str) -> str:
    """The template to render: the named partial for an htmx request, else the page.
    The partial is rendered by the same view as its page, so it passes the same access
    checks (``EstatePage.dispatch``)."""
    return f"{template}#{partial}" if getattr(request, "htmx", False) else template
