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
        # DRF's steps: authentication, permissions, then the caller's own limits
        # (``check_throttles``) — counted before the estate is known, so that probing
        # other estates' ids is counted too. Then the estate.
        super().initial(request, *args, **kwargs)
        self.access = self.estate_access(cast(User, request.user), kwargs.get("cluster_id"))

    def estate_access(self, user: User, cluster_id: object) -> EstateAccess:
        """The caller's access to the URL's estate (``NotFoundError`` if they are not in
        it), counted against the estate's shared limit once the estate is known to be
        real. The caller and their membership of this estate were read together, in one
        statement, when the bearer token was authenticated
        (``levy.api.authentication``, decision 0027); ``access_cluster`` takes the
        membership from there, or reads it itself for any other way in."""
        access = access_cluster(user, cluster_id)
        wait = ratelimit.hit("estate", str(access.cluster.pk))
        if wait is not None:
            raise exceptions.Throttled(wait=wait)
        return access
