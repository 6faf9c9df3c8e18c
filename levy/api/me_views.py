"""The caller: who they are, the estates they belong to, and (for the platform operator)
creating an estate."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.accounts.models import User
from levy.api.pagination import LevyCursorPagination
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.views import LevyAPIView
from levy.common.errors import PermissionDeniedError
from levy.estates.permissions import permissions_for_role
from levy.estates.selectors import person_clusters, person_memberships
from levy.estates.services import cluster_create

ERRORS = errors()


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
        memberships = person_memberships(user)
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
        clusters = person_clusters(user)
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
