"""Shared view bases: authentication, estate scoping, rate limits, origin."""

from __future__ import annotations

from typing import Any, cast

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from levy.access import EstateAccess, access_cluster
from levy.accounts.models import User
from levy.common import ratelimit
from levy.common.origin import Origin
from levy.common.origin import origin_of as request_origin


def origin_of(request: Request) -> Origin:
    return request_origin(request)


class LevyAPIView(APIView):
    """Base view: signed-in callers, rate limited (``rate_scope`` names a tighter limit)."""

    rate_scope: str | None = None
    throttle_classes: list[Any] = []

    def rate_limit(self, request: Request, scope: str | None = None) -> None:
        """Count this request against the caller's limits (the view's scope, or
        ``scope`` for an extra limit on one method)."""
        if scope is None:
            wait = ratelimit.check(request, scope=self.rate_scope)
        else:
            wait = ratelimit.check_scope(request, scope)
        if wait is not None:
            raise exceptions.Throttled(wait=wait)

    def check_throttles(self, request: Request) -> None:
        self.rate_limit(request)

    @property
    def origin(self) -> Origin:
        return origin_of(self.request)


class EstateAPIView(LevyAPIView):
    """A view under ``/clusters/{cluster_id}/``: ``self.access`` is the caller's access
    to that estate, resolved before the handler runs; outside it, 404."""

    access: EstateAccess

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        self.check_permissions(request)
        # The caller's own limits first, so that probing other estates' ids is
        # counted too; then the estate's shared limit, once we know the estate is real.
        self.rate_limit(request)
        self.access = access_cluster(cast(User, request.user), kwargs.get("cluster_id"))
        wait = ratelimit.hit("estate", str(self.access.cluster.pk))
        if wait is not None:
            raise exceptions.Throttled(wait=wait)
