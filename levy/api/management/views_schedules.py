"""Endpoints for recurring bills (schedules): create, list, pause, resume, end.

Reads need any financial permission; writes need ``ManageBill``. The bills a schedule
issues are ordinary bills (``bills/?schedule_id=`` lists them).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_schedule
from levy.api.pagination import listing_response
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import MoneyField
from levy.api.views import EstateAPIView
from levy.billing.models import BillCategory, BillSchedule, ScheduleFrequency
from levy.billing.schedules import (
    MAX_ISSUE_DAYS_BEFORE,
    ScheduleInput,
    period_due_date,
    schedule_create,
    schedule_end,
    schedule_pause,
    schedule_resume,
)
from levy.billing.selectors import SCHEDULE_STATUSES, ScheduleFilters, schedule_list
from levy.estates.permissions import PaymentsPermissions

ERRORS = errors()


class ScheduleSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    description = serializers.CharField()
    category = serializers.ChoiceField(choices=BillCategory.choices)
    amount = MoneyField()
    currency = serializers.CharField(source="cluster.currency")
    allow_payment_after_due = serializers.BooleanField()
    is_cluster_wide = serializers.SerializerMethodField()
    user_id = serializers.UUIDField(allow_null=True)
    frequency = serializers.ChoiceField(choices=ScheduleFrequency.choices)
    first_due_date = serializers.DateField()
    issue_days_before = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    next_period = serializers.IntegerField()
    next_due_date = serializers.SerializerMethodField()
    next_issue_on = serializers.DateField()
    created_at = serializers.DateTimeField()
    paused_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.CharField()

    def get_is_cluster_wide(self, schedule: BillSchedule) -> bool:
        return schedule.user_id is None

    @extend_schema_field(serializers.ChoiceField(choices=SCHEDULE_STATUSES))
    def get_status(self, schedule: BillSchedule) -> str:
        return schedule.status

    @extend_schema_field(serializers.DateField())
    def get_next_due_date(self, schedule: BillSchedule) -> str:
        return period_due_date(schedule, schedule.next_period).isoformat()


class ScheduleCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=160)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    category = serializers.ChoiceField(choices=BillCategory.choices)
    amount = MoneyField(min_value=None)
    allow_payment_after_due = serializers.BooleanField(required=False, default=False)
    frequency = serializers.ChoiceField(choices=ScheduleFrequency.choices)
    first_due_date = serializers.DateField()
    issue_days_before = serializers.IntegerField(
        required=False, default=14, min_value=0, max_value=MAX_ISSUE_DAYS_BEFORE
    )
    user_id = serializers.UUIDField(required=False, allow_null=True, default=None)


class ScheduleFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SCHEDULE_STATUSES, required=False)


class ScheduleEndSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ScheduleListView(EstateAPIView):
    @extend_schema(
        parameters=[ScheduleFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(ScheduleSerializer), **ERRORS},
        summary="Recurring bills (schedules), newest first",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        filters = ScheduleFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = schedule_list(access=self.access, filters=ScheduleFilters(**filters.validated_data))
        return listing_response(self, listing, ScheduleSerializer)

    @extend_schema(
        request=ScheduleCreateSerializer,
        responses={201: ScheduleSerializer, **ERRORS},
        summary="Create a recurring bill: no user_id for the whole estate, or one resident's",
    )
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageBill)
        data = ScheduleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        user_id = values.pop("user_id", None)
        schedule = schedule_create(
            access=self.access, data=ScheduleInput(**values), user_id=user_id, origin=self.origin
        )
        return Response(ScheduleSerializer(schedule).data, status=201)


def _changed(view: EstateAPIView, schedule_id: str, change: Any, **kwargs: Any) -> Response:
    view.access.require(PaymentsPermissions.ManageBill)
    schedule = access_schedule(view.access, schedule_id)
    changed = change(access=view.access, schedule=schedule, origin=view.origin, **kwargs)
    return Response(ScheduleSerializer(changed).data)


class SchedulePauseView(EstateAPIView):
    @extend_schema(
        request=None,
        responses={200: ScheduleSerializer, 409: error("schedule_ended"), **ERRORS},
        summary="Pause a schedule (bills already issued are not touched; pausing twice changes nothing)",
    )
    def post(self, request: Request, cluster_id: str, schedule_id: str) -> Response:
        return _changed(self, schedule_id, schedule_pause)


class ScheduleResumeView(EstateAPIView):
    @extend_schema(
        request=None,
        responses={200: ScheduleSerializer, 409: error("schedule_ended"), **ERRORS},
        summary="Resume a schedule from its next period not yet due (periods due while paused are skipped)",
    )
    def post(self, request: Request, cluster_id: str, schedule_id: str) -> Response:
        return _changed(self, schedule_id, schedule_resume)


class ScheduleEndView(EstateAPIView):
    @extend_schema(
        request=ScheduleEndSerializer,
        responses={200: ScheduleSerializer, 409: error("schedule_ended"), **ERRORS},
        summary="End a schedule for good (bills already issued are not touched)",
    )
    def post(self, request: Request, cluster_id: str, schedule_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageBill)
        data = ScheduleEndSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _changed(self, schedule_id, schedule_end, reason=data.validated_data["reason"])
