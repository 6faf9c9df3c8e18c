"""Sign-in, the caller, estates, and the notification inbox."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from levy.accounts import signin_guard
from levy.accounts.models import User
from levy.api.pagination import LevyCursorPagination
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.views import LevyAPIView
from levy.common.errors import NotAuthenticatedError, PermissionDeniedError
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import permissions_for_role
from levy.estates.services import cluster_create
from levy.notifications.inbox import notification_mark_read, notifications_mark_all_read
from levy.notifications.models import Notification

ERRORS = errors()


class SignInInputSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField()


SIGN_IN_ERRORS = {
    400: error("validation_error"),
    401: error("not_authenticated (wrong email or password, or an invalid refresh token)"),
    415: error("unsupported_media_type"),
    429: error(
        "rate_limited (too many failed attempts from this address) or account_locked (too many wrong "
        "passwords for this account; the right password is refused too until the lock ends); see Retry-After"
    ),
}


class AnonymousAPIView(LevyAPIView):
    """Sign-in and refresh: no credentials needed, and limited by the sign-in guard
    (levy/accounts/signin_guard.py) instead of the general per-caller limits."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def check_throttles(self, request: Request) -> None:
        pass


class TokenView(AnonymousAPIView):
    """Exchange email and password for an access and a refresh token."""

    @extend_schema(
        request=SignInInputSerializer, responses={200: TokenPairSerializer, **SIGN_IN_ERRORS}, summary="Sign in"
    )
    def post(self, request: Request) -> Response:
        data = SignInInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = signin_guard.sign_in_authenticate(
            request=request._request,
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            origin=self.origin,
        )
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


class RefreshView(AnonymousAPIView):
    """Exchange a refresh token for a new access token."""

    @extend_schema(
        request=RefreshInputSerializer,
        responses={200: AccessTokenSerializer, **SIGN_IN_ERRORS},
        summary="Refresh the access token",
    )
    def post(self, request: Request) -> Response:
        ip = self.origin.ip
        signin_guard.token_refresh_check(ip=ip)
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            refresh = RefreshToken(data.validated_data["refresh"])
        except TokenError as exc:
            signin_guard.token_refresh_failed(ip=ip)
            raise InvalidToken(exc.args[0]) from None
        user_id = str(refresh.payload.get(jwt_settings.USER_ID_CLAIM, ""))
        signin_guard.token_refresh_counted(user_id=user_id)
        try:
            active = User.objects.filter(pk=user_id, is_active=True).exists()
        except (DjangoValidationError, ValueError):
            active = False
        if not active:
            signin_guard.token_refresh_failed(ip=ip)
            raise NotAuthenticatedError("No active account found for the given token.")
        return Response({"access": str(refresh.access_token)})


class MembershipOutSerializer(serializers.Serializer):
    cluster_id = serializers.UUIDField()
    cluster_name = serializers.CharField(source="cluster.name")
    role = serializers.CharField()
    is_resident = serializers.BooleanField()
    permissions = serializers.SerializerMethodField()

    def get_permissions(self, membership: Any) -> list[str]:
        return sorted(p.name for p in permissions_for_role(membership.role))


class MeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    name = serializers.CharField()
    is_platform_operator = serializers.BooleanField(source="is_superuser")
    memberships = MembershipOutSerializer(many=True)


class MeView(LevyAPIView):
    @extend_schema(responses={200: MeSerializer, **ERRORS}, summary="Who I am and where I belong")
    def get(self, request: Request) -> Response:
        user = cast(User, request.user)
        memberships = Membership.objects.filter(user_id=user.pk, active=True).select_related("cluster")
        return Response(
            MeSerializer(
                {
                    "id": user.pk,
                    "email": user.email,
                    "name": user.name,
                    "is_superuser": user.is_superuser,
                    "memberships": memberships,
                }
            ).data
        )


class ClusterSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(max_length=200)
    currency = serializers.CharField(max_length=3, required=False, default="")
    created_at = serializers.DateTimeField(read_only=True)


class ClusterListView(LevyAPIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(ClusterSerializer), **ERRORS},
        summary="The estates I belong to",
    )
    def get(self, request: Request) -> Response:
        user = cast(User, request.user)
        clusters: QuerySet[Cluster] = Cluster.objects.filter(memberships__user_id=user.pk, memberships__active=True)
        paginator = LevyCursorPagination()
        page = paginator.paginate_queryset(clusters, request, view=self)
        return paginator.get_paginated_response(ClusterSerializer(page, many=True).data)

    @extend_schema(
        request=ClusterSerializer,
        responses={201: ClusterSerializer, 403: error("permission_denied"), **ERRORS},
        summary="Create an estate (platform operator)",
    )
    def post(self, request: Request) -> Response:
        operator = cast(User, request.user)
        if not operator.is_superuser:
            raise PermissionDeniedError()
        data = ClusterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cluster = cluster_create(operator=operator, origin=self.origin, **data.validated_data)
        return Response(ClusterSerializer(cluster).data, status=201)


class NotificationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event = serializers.CharField()
    priority = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    context = serializers.DictField()  # type: ignore[assignment]
    cluster_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)


class NotificationFilterSerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)


class NotificationListView(LevyAPIView):
    @extend_schema(
        parameters=[NotificationFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(NotificationSerializer), **ERRORS},
        summary="My notifications, newest first",
    )
    def get(self, request: Request) -> Response:
        filters = NotificationFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        items = Notification.objects.filter(recipient_id=request.user.pk)
        if filters.validated_data.get("unread") is True:
            items = items.filter(read_at__isnull=True)
        elif filters.validated_data.get("unread") is False:
            items = items.filter(read_at__isnull=False)
        paginator = LevyCursorPagination()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(NotificationSerializer(page, many=True).data)


class NotificationReadView(LevyAPIView):
    @extend_schema(
        request=None,
        responses={200: NotificationSerializer, 404: error("not_found"), **ERRORS},
        summary="Mark one notification read",
    )
    def post(self, request: Request, notification_id: str) -> Response:
        item = notification_mark_read(user=cast(User, request.user), notification_id=notification_id)
        return Response(NotificationSerializer(item).data)


class ReadAllSerializer(serializers.Serializer):
    marked = serializers.IntegerField()


class NotificationReadAllView(LevyAPIView):
    @extend_schema(request=None, responses={200: ReadAllSerializer, **ERRORS}, summary="Mark all my notifications read")
    def post(self, request: Request) -> Response:
        return Response({"marked": notifications_mark_all_read(user=cast(User, request.user))})


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Whether this process can serve requests: 503 only when the database does not
    answer. The cache (Redis) is reported but not required: without it rate limits are
    not enforced and notifications wait for the sweep, but every request is still
    served — a load balancer must not take every web process out during a Redis outage."""
    from django.core.cache import cache

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: this is the health check
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("levy:readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("levy:readyz") == "1" else "error: no value"
    except Exception as exc:
        checks["cache"] = f"error: {type(exc).__name__}"
    if checks["database"] != "ok":
        return JsonResponse({"status": "unavailable", "checks": checks}, status=503)
    status = "ok" if checks["cache"] == "ok" else "degraded"
    return JsonResponse({"status": status, "checks": checks}, status=200)
