"""Endpoints for estate admins, treasurers and auditors: bills, the dashboard and
disputes. The members are in ``views_members``, the ledger in ``views_ledger``,
recurring bills in ``views_schedules``, providers and top-ups in ``views_payments``.

Reads need any financial permission (``ViewPayments`` or a Manage permission); writes
need the permission named in api.md. Every view is scoped to the caller's estate by
``EstateAPIView``; every list is annotated in one query.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_bill_as_staff, access_dispute
from levy.api.pagination import listing_response
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import (
    BillBaseSerializer,
    DisputeSerializer,
    MoneyField,
    MoneyTotalField,
)
from levy.api.views import EstateAPIView
from levy.billing.models import BillCategory, DisputeStatus, LateFeeKind
from levy.billing.selectors import (
    BillFilters,
    BillMemberFilters,
    BillStats,
    DisputeFilters,
    bill_detail,
    bill_list,
    bill_member_list,
    cluster_dashboard,
    dispute_list,
)
from levy.billing.services import (
    bill_cancel,
    bill_create_cluster_wide,
    bill_create_user_specific,
    bill_update,
    dispute_resolve,
)
from levy.billing.status import BillStatus
from levy.billing.validation import BillInput
from levy.estates.permissions import PaymentsPermissions

ERRORS = errors()


# --- bills ----------------------------------------------------------------------------------


class BillStatsSerializer(serializers.Serializer):
    eligible = serializers.IntegerField()
    acknowledged = serializers.IntegerField()
    paid = serializers.IntegerField()
    disputed = serializers.IntegerField()
    waived = serializers.IntegerField()
    overdue = serializers.IntegerField()
    outstanding = serializers.IntegerField()
    collected_amount = MoneyTotalField()


class ManagedBillSerializer(BillBaseSerializer):
    user_id = serializers.UUIDField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    cancellation_reason = serializers.CharField()
    schedule_id = serializers.UUIDField(allow_null=True)
    schedule_period = serializers.IntegerField(allow_null=True)
    late_fee_kind = serializers.CharField(help_text='"" (no late fee), "fixed" or "percent".')
    late_fee_value = MoneyField(allow_null=True, help_text="The fixed amount, or the percentage of the amount.")
    late_fee_grace_days = serializers.IntegerField(allow_null=True)
    late_fees_issued_at = serializers.DateTimeField(allow_null=True)
    stats = serializers.SerializerMethodField()

    @extend_schema_field(BillStatsSerializer)
    def get_stats(self, bill: Any) -> dict[str, Any]:
        return dict(BillStatsSerializer(BillStats.of(bill)).data)


class BillCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    category = serializers.ChoiceField(choices=BillCategory.choices)
    amount = MoneyField(min_value=None)
    due_date = serializers.DateField()
    allow_payment_after_due = serializers.BooleanField(required=False, default=False)
    user_id = serializers.UUIDField(required=False, allow_null=True, default=None)
    late_fee_kind = serializers.ChoiceField(
        choices=LateFeeKind.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="Leave out for no late fee.",
    )
    late_fee_value = MoneyField(
        min_value=None,
        required=False,
        allow_null=True,
        default=None,
        help_text='The fixed amount ("500.00") or the percentage of the amount ("2.5", at most 100).',
    )
    late_fee_grace_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=366,
        help_text="Days after the due date before the fee is charged.",
    )


class BillUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    category = serializers.ChoiceField(choices=BillCategory.choices, required=False)
    amount = MoneyField(required=False)
    due_date = serializers.DateField(required=False)
    allow_payment_after_due = serializers.BooleanField(required=False)
    user_id = serializers.UUIDField(required=False, allow_null=True)


class BillFilterSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["cluster", "user"], required=False)
    user_id = serializers.UUIDField(required=False)
    category = serializers.ChoiceField(choices=BillCategory.choices, required=False)
    due_before = serializers.DateField(required=False)
    due_after = serializers.DateField(required=False)
    cancelled = serializers.BooleanField(required=False, allow_null=True, default=None)
    search = serializers.CharField(required=False, max_length=200)
    schedule_id = serializers.UUIDField(required=False)


class BillListView(EstateAPIView):
    @extend_schema(
        parameters=[BillFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(ManagedBillSerializer), **ERRORS},
        summary="Bills with their counts",
        operation_id="management_bills_list",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        self.access.require_read_finances()
        filters = BillFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = bill_list(access=self.access, filters=BillFilters(**filters.validated_data))
        return listing_response(self, listing, ManagedBillSerializer)

    @extend_schema(
        request=BillCreateSerializer,
        responses={201: ManagedBillSerializer, **ERRORS},
        summary="Create a bill: no user_id for the whole estate, or one member's",
    )
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageBill)
        self.rate_limit(request, scope="bill_create")
        data = BillCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        user_id = values.pop("user_id", None)
        bill_input = BillInput(**values)
        if user_id is None:
            bill = bill_create_cluster_wide(access=self.access, data=bill_input, origin=self.origin)
        else:
            bill = bill_create_user_specific(access=self.access, user_id=user_id, data=bill_input, origin=self.origin)
        # The service set the new bill's opening stats: no need to read it back.
        return Response(ManagedBillSerializer(bill).data, status=201)


class BillDetailView(EstateAPIView):
    @extend_schema(responses={200: ManagedBillSerializer, **ERRORS}, summary="One bill with its counts")
    def get(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        return Response(ManagedBillSerializer(bill_detail(bill=access_bill_as_staff(self.access, bill_id))).data)

    @extend_schema(
        request=BillUpdateSerializer,
        responses={
            200: ManagedBillSerializer,
            409: error("bill_terms_locked, bill_cancelled"),
            **ERRORS,
        },
        summary="Edit a bill (terms only until the first acknowledgement or payment)",
    )
    def patch(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageBill)
        bill = access_bill_as_staff(self.access, bill_id)
        data = BillUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        bill_update(access=self.access, bill=bill, changes=dict(data.validated_data), origin=self.origin)
        return Response(ManagedBillSerializer(bill_detail(bill=bill)).data)


class CancelInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000)


class BillCancelView(EstateAPIView):
    @extend_schema(
        request=CancelInputSerializer,
        responses={200: ManagedBillSerializer, 409: error("bill_cancelled"), **ERRORS},
        summary="Cancel a bill",
    )
    def post(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageBill)
        bill = access_bill_as_staff(self.access, bill_id)
        data = CancelInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        bill_cancel(access=self.access, bill=bill, reason=data.validated_data["reason"], origin=self.origin)
        return Response(ManagedBillSerializer(bill_detail(bill=bill)).data)


class BillMemberSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    name = serializers.CharField(source="user.name")
    email = serializers.EmailField(source="user.email")
    status = serializers.ChoiceField(choices=BillStatus.choices)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)
    dispute_id = serializers.UUIDField(allow_null=True)


class BillMemberFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=BillStatus.choices, required=False)


class BillMembersView(EstateAPIView):
    @extend_schema(
        parameters=[BillMemberFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(BillMemberSerializer), **ERRORS},
        summary="Each member's status for one bill",
    )
    def get(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        bill = access_bill_as_staff(self.access, bill_id)
        filters = BillMemberFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = bill_member_list(bill=bill, filters=BillMemberFilters(**filters.validated_data))
        return listing_response(self, listing, BillMemberSerializer)


# --- dashboard ------------------------------------------------------------------------------


class RecentPaymentSerializer(serializers.Serializer):
    transaction_id = serializers.UUIDField(source="id")
    bill_id = serializers.UUIDField()
    bill_title = serializers.CharField(source="bill.title")
    user_id = serializers.UUIDField(source="payer_id")
    name = serializers.CharField(source="payer.name")
    amount = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    refunded_at = serializers.DateTimeField(
        allow_null=True, help_text="When the payment was refunded (null if not): it is then not in collected_amount."
    )

    def get_amount(self, tx: Any) -> str:
        return f"{-tx.amount:.2f}"


class DueSoonSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    title = serializers.CharField()
    amount = MoneyField()
    due_date = serializers.DateField()
    outstanding = serializers.IntegerField(source="stat_outstanding")


class DashboardSerializer(serializers.Serializer):
    currency = serializers.CharField()
    billed_amount = MoneyTotalField()
    collected_amount = MoneyTotalField()
    outstanding_amount = MoneyTotalField()
    overdue_amount = MoneyTotalField()
    collection_rate = serializers.DecimalField(max_digits=7, decimal_places=4, coerce_to_string=True)
    open_disputes = serializers.IntegerField()
    bills_count = serializers.IntegerField()
    members_count = serializers.IntegerField()
    recent_payments = RecentPaymentSerializer(many=True)
    due_soon = DueSoonSerializer(many=True)


class DashboardView(EstateAPIView):
    @extend_schema(responses={200: DashboardSerializer, **ERRORS}, summary="The estate at a glance")
    def get(self, request: Request, cluster_id: str) -> Response:
        return Response(DashboardSerializer(cluster_dashboard(self.access)).data)


# --- disputes -------------------------------------------------------------------------------


class DisputeFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DisputeStatus.choices, required=False)


class DisputeListView(EstateAPIView):
    @extend_schema(
        parameters=[DisputeFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(DisputeSerializer), **ERRORS},
        summary="Disputes",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        self.access.require_read_finances()
        filters = DisputeFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = dispute_list(access=self.access, filters=DisputeFilters(**filters.validated_data))
        return listing_response(self, listing, DisputeSerializer)


class ResolveInputSerializer(serializers.Serializer):
    resolution = serializers.ChoiceField(choices=[DisputeStatus.UPHELD, DisputeStatus.REJECTED])
    note = serializers.CharField(max_length=5000)


class DisputeResolveView(EstateAPIView):
    @extend_schema(
        request=ResolveInputSerializer,
        responses={200: DisputeSerializer, 409: error("dispute_already_resolved"), **ERRORS},
        summary="Resolve a dispute: upheld waives the bill for that member",
    )
    def post(self, request: Request, cluster_id: str, dispute_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageBill)
        dispute = access_dispute(self.access, dispute_id)
        data = ResolveInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        resolved = dispute_resolve(access=self.access, dispute=dispute, origin=self.origin, **data.validated_data)
        return Response(DisputeSerializer(resolved).data)
