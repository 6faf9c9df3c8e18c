"""Endpoints for estate admins, treasurers and auditors.

Reads need any financial permission (``ViewPayments`` or a Manage permission); writes
need the permission named in api.md. Every view is scoped to the caller's estate by
``EstateAPIView``; every list is annotated in one query.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_bill_as_staff, access_dispute, access_member_import, access_membership
from levy.api.idempotency import HEADER, run_idempotent
from levy.api.pagination import listing_response
from levy.api.parsers import SafeJSONParser
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import (
    BillBaseSerializer,
    DisputeSerializer,
    MoneyField,
    MoneyTotalField,
    TransactionSerializer,
)
from levy.api.views import EstateAPIView
from levy.billing.models import BillCategory, DisputeStatus, LateFeeKind
from levy.billing.selectors import (
    BillFilters,
    BillMemberFilters,
    BillStats,
    DisputeFilters,
    MemberFilters,
    bill_detail,
    bill_list,
    bill_member_list,
    cluster_dashboard,
    dispute_list,
    member_list,
)
from levy.billing.services import (
    BillInput,
    bill_cancel,
    bill_create_cluster_wide,
    bill_create_user_specific,
    bill_update,
    dispute_resolve,
)
from levy.billing.status import BillStatus
from levy.common.errors import ValidationError
from levy.estates.imports import MAX_IMPORT_BYTES, member_import_start
from levy.estates.models import MemberImport
from levy.estates.permissions import MembersPermissions, PaymentsPermissions, Role
from levy.estates.services import member_add, member_sign_in_unlock, member_update
from levy.wallets.models import TransactionStatus, TransactionType
from levy.wallets.selectors import TransactionFilters, transaction_list
from levy.wallets.services import wallet_credit

ERRORS = errors()


# --- members --------------------------------------------------------------------------------


class MemberInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    name = serializers.CharField(max_length=200)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.RESIDENT)
    is_resident = serializers.BooleanField(required=False, allow_null=True, default=None)
    password = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=128, min_length=8)


class MemberSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="user_id")
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = serializers.CharField()
    is_resident = serializers.BooleanField()
    active = serializers.BooleanField()
    joined_at = serializers.DateTimeField()


class BillSummarySerializer(serializers.Serializer):
    outstanding_count = serializers.IntegerField(source="sum_outstanding_count")
    outstanding_amount = MoneyTotalField(source="sum_outstanding_amount")
    overdue_count = serializers.IntegerField(source="sum_overdue_count")
    unacknowledged_count = serializers.IntegerField(source="sum_unacknowledged_count")
    disputed_count = serializers.IntegerField(source="sum_disputed_count")
    paid_count = serializers.IntegerField(source="sum_paid_count")


class MemberWithSummarySerializer(MemberSerializer):
    bill_summary = BillSummarySerializer(source="*")


class MemberFilterSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    has_overdue = serializers.BooleanField(required=False, allow_null=True, default=None)
    search = serializers.CharField(required=False, max_length=200)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class MemberListView(EstateAPIView):
    @extend_schema(
        parameters=[MemberFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(MemberWithSummarySerializer), **ERRORS},
        summary="Members with their bill summary (hover card)",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        self.access.require_read_finances()
        filters = MemberFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = member_list(access=self.access, filters=MemberFilters(**filters.validated_data))
        return listing_response(self, listing, MemberWithSummarySerializer)

    @extend_schema(request=MemberInputSerializer, responses={201: MemberSerializer, **ERRORS}, summary="Add a member")
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        data = MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = member_add(access=self.access, origin=self.origin, **data.validated_data)
        # Only what the caller typed: adding an existing account must not reveal the name
        # that person chose (they are told they were added, and may leave).
        body = MemberSerializer(membership).data
        body["name"] = data.validated_data["name"].strip()
        return Response(body, status=201)


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    is_resident = serializers.BooleanField(required=False)
    active = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send role, is_resident or active.")
        return attrs


class MemberDetailView(EstateAPIView):
    @extend_schema(
        request=MemberUpdateSerializer,
        responses={200: MemberSerializer, 409: error("last_admin"), **ERRORS},
        summary="Change a member",
        description="Refused with 409 last_admin when it would leave the estate without an active admin.",
    )
    def patch(self, request: Request, cluster_id: str, user_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        membership = access_membership(self.access, user_id)
        data = MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = member_update(access=self.access, membership=membership, origin=self.origin, **data.validated_data)
        updated.user = membership.user
        return Response(MemberSerializer(updated).data)


class SignInUnlockSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    unlocked = serializers.BooleanField(help_text="False when the account had no lock and no failed sign-ins.")


class MemberSignInUnlockView(EstateAPIView):
    @extend_schema(
        request=None,
        responses={200: SignInUnlockSerializer, **ERRORS},
        summary="Unlock a member's sign-in after too many wrong passwords",
    )
    def post(self, request: Request, cluster_id: str, user_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        membership = access_membership(self.access, user_id)
        unlocked = member_sign_in_unlock(access=self.access, membership=membership, origin=self.origin)
        return Response({"user_id": membership.user_id, "unlocked": unlocked})


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    message = serializers.CharField()


class MemberImportSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=MemberImport.Status.choices)
    file_name = serializers.CharField()
    total_lines = serializers.IntegerField(help_text="Lines after the header.")
    processed_lines = serializers.IntegerField(help_text="Lines checked so far (all of them once imported).")
    created = serializers.IntegerField(source="created_count", help_text="Members added (new or returning).")
    skipped = serializers.IntegerField(
        source="skipped_count", help_text="Lines whose email is already an active member: not imported."
    )
    error_count = serializers.IntegerField(help_text="Bad lines; any bad line means nothing was imported.")
    errors = ImportErrorSerializer(many=True, help_text="The bad lines (the first 1,000).")  # type: ignore[assignment]
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()


class MemberImportView(EstateAPIView):
    parser_classes = [MultiPartParser, FormParser, SafeJSONParser]

    @extend_schema(
        request={"multipart/form-data": ImportInputSerializer},
        responses={202: MemberImportSerializer, **ERRORS},
        summary="Import members from CSV (email,name,role,is_resident), as a background job",
        description="Answers 202 at once with the import's id and status (queued); follow it at "
        "members/imports/{import_id}/ (the Location header). A file with any bad line imports nothing "
        "(status failed, each bad line in errors as {line, message}); emails already active in the estate "
        "are skipped and counted. A file over 5 MB or not UTF-8 is refused at once (400 on file).",
    )
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError(fields={"file": ["Upload a CSV file in the field 'file'."]})
        if upload.size is not None and upload.size > MAX_IMPORT_BYTES:
            raise ValidationError(fields={"file": ["The file is larger than 5 MB."]})
        job = member_import_start(
            access=self.access, file_name=upload.name or "", content=upload.read(), origin=self.origin
        )
        location = f"{request.path.rstrip('/').rsplit('/', 1)[0]}/imports/{job.pk}/"
        return Response(MemberImportSerializer(job).data, status=202, headers={"Location": location})


class MemberImportStatusView(EstateAPIView):
    @extend_schema(
        responses={200: MemberImportSerializer, **ERRORS},
        summary="A members import: status, progress and per-line errors",
        description="status: queued, validating (processed_lines counts the lines checked), importing, "
        "succeeded or failed. Poll it (every second or two) until succeeded or failed.",
    )
    def get(self, request: Request, cluster_id: str, import_id: str) -> Response:
        job = access_member_import(self.access, import_id)
        return Response(MemberImportSerializer(job).data)


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


# --- ledger ---------------------------------------------------------------------------------


class TransactionFilterSerializer(serializers.Serializer):
    user_id = serializers.UUIDField(required=False)
    type = serializers.ChoiceField(choices=TransactionType.choices, required=False)
    status = serializers.ChoiceField(choices=TransactionStatus.choices, required=False)
    bill_id = serializers.UUIDField(required=False)


class TransactionListView(EstateAPIView):
    @extend_schema(
        parameters=[TransactionFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(TransactionSerializer), **ERRORS},
        summary="Ledger entries",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        self.access.require_read_finances()
        filters = TransactionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = transaction_list(access=self.access, filters=TransactionFilters(**filters.validated_data))
        return listing_response(self, listing, TransactionSerializer, currency=self.access.cluster.currency)


class CreditInputSerializer(serializers.Serializer):
    amount = MoneyField()
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class WalletCreditView(EstateAPIView):
    rate_scope = "credit"

    @extend_schema(
        request=CreditInputSerializer,
        parameters=[
            OpenApiParameter(HEADER, str, OpenApiParameter.HEADER, required=True, description="Unique per credit.")
        ],
        responses={
            201: TransactionSerializer,
            409: error("idempotency_key_in_use"),
            422: error("idempotency_key_reused"),
            **ERRORS,
        },
        summary="Record money received for a member",
    )
    def post(self, request: Request, cluster_id: str, user_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageWallet)
        membership = access_membership(self.access, user_id)

        def credit(key: str) -> Response:
            data = CreditInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            tx = wallet_credit(
                access=self.access,
                membership=membership,
                idempotency_key=key,
                origin=self.origin,
                **data.validated_data,
            )
            body = TransactionSerializer(tx, context={"currency": self.access.cluster.currency}).data
            return Response(body, status=201)

        return run_idempotent(request, self.access, credit, self.get_exception_handler_context())
