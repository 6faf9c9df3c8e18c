"""The caller's notification inbox: the list (all, unread or read), marking one read,
marking all read. The web inbox calls the same selector and services
(``levy.notifications.inbox``)."""

from __future__ import annotations

from typing import cast

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.accounts.models import User
from levy.api.pagination import LevyCursorPagination
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.views import LevyAPIView
from levy.notifications.inbox import notification_list, notification_mark_read, notifications_mark_all_read

ERRORS = errors()


class NotificationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event = serializers.CharField()
    priority = serializers.CharField()
    title = serializers.CharField(help_text="For people: amounts and dates as the pages write them (₦15,000.00).")
    body = serializers.CharField(help_text="For people: amounts and dates as the pages write them (31 Dec 2026).")
    context = serializers.DictField(  # type: ignore[assignment]
        help_text='For programs: raw values ("amount": "15000.00", "due_date": "2026-12-31").'
    )
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
        items = notification_list(user=cast(User, request.user), unread=filters.validated_data.get("unread"))
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
