"""Endpoints for residents: their bills, acknowledgement, disputes, payment, wallet."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_bill_as_member, access_own_transaction
from levy.api.idempotency import HEADER, run_idempotent
from levy.api.pagination import listing_response
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import DisputeSerializer, MemberBillSerializer, MoneyField, TransactionSerializer
from levy.api.views import EstateAPIView
from levy.billing.models import BillCategory
from levy.billing.payments import bill_pay, transaction_retry
from levy.billing.selectors import MemberBillFilters, member_bill, member_bill_list
from levy.billing.services import bill_acknowledge_with_status, bill_dispute
from levy.billing.status import BillStatus
from levy.members.services import member_leave
from levy.wallets.selectors import member_transaction_list
from levy.wallets.services import member_wallet

ERRORS = errors()
IDEMPOTENCY_HEADER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="Unique per money movement; replays return the first response.",
)


class BillFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=BillStatus.choices, required=False)
    category = serializers.ChoiceField(choices=BillCategory.choices, required=False)


class MemberBillListView(EstateAPIView):
    @extend_schema(
        parameters=[BillFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(MemberBillSerializer), **ERRORS},
        summary="My bills: estate-wide ones that apply to me, and my own",
        operation_id="member_bills_list",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        filters = BillFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = member_bill_list(access=self.access, filters=MemberBillFilters(**filters.validated_data))
        return listing_response(self, listing, MemberBillSerializer)


class MemberBillDetailView(EstateAPIView):
    @extend_schema(responses={200: MemberBillSerializer, **ERRORS}, summary="One of my bills")
    def get(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        bill = access_bill_as_member(self.access, bill_id)
        return Response(MemberBillSerializer(member_bill(access=self.access, bill=bill)).data)


class AcknowledgementSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=BillStatus.choices)
    acknowledged_at = serializers.DateTimeField()


class AcknowledgeView(EstateAPIView):
    rate_scope = "acknowledge"

    @extend_schema(
        request=None,
        responses={200: AcknowledgementSerializer, 409: error("bill_cancelled"), **ERRORS},
        summary="Acknowledge a bill (repeating it changes nothing)",
    )
    def post(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        bill = access_bill_as_member(self.access, bill_id)
        ack, _, status = bill_acknowledge_with_status(access=self.access, bill=bill, origin=self.origin)
        return Response(AcknowledgementSerializer({"status": status, "acknowledged_at": ack.acknowledged_at}).data)


class DisputeInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000, trim_whitespace=True)


class DisputeView(EstateAPIView):
    rate_scope = "dispute"

    @extend_schema(
        request=DisputeInputSerializer,
        responses={
            201: DisputeSerializer,
            409: error("bill_cancelled, bill_already_paid, bill_waived, dispute_already_open"),
            **ERRORS,
        },
        summary="Dispute a bill",
    )
    def post(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        bill = access_bill_as_member(self.access, bill_id)
        data = DisputeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dispute = bill_dispute(access=self.access, bill=bill, reason=data.validated_data["reason"], origin=self.origin)
        return Response(DisputeSerializer(dispute).data, status=201)


class PaymentResultSerializer(serializers.Serializer):
    transaction_id = serializers.UUIDField()
    reference = serializers.CharField()
    amount = MoneyField()
    currency = serializers.CharField()
    wallet_balance = MoneyField()
    status = serializers.CharField()


def _payment_response(tx: Any, currency: str) -> Response:
    return Response(
        PaymentResultSerializer(
            {
                "transaction_id": tx.pk,
                "reference": tx.reference,
                "amount": -tx.amount,
                "currency": currency,
                "wallet_balance": tx.balance_after,
                "status": "paid",
            }
        ).data,
        status=201,
    )


PAY_ERRORS = {
    402: error("insufficient_funds (a failed transaction is recorded)"),
    409: error(
        "bill_not_acknowledged, bill_already_paid, bill_cancelled, bill_waived, bill_disputed, "
        "payment_after_due_not_allowed, idempotency_key_in_use"
    ),
    422: error("idempotency_key_reused"),
    **ERRORS,
}


class PayView(EstateAPIView):
    rate_scope = "pay"

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: PaymentResultSerializer, **PAY_ERRORS},
        summary="Pay a bill from my wallet",
    )
    def post(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        bill = access_bill_as_member(self.access, bill_id)

        def pay(key: str) -> Response:
            tx = bill_pay(access=self.access, bill=bill, idempotency_key=key, origin=self.origin)
            return _payment_response(tx, self.access.cluster.currency)

        return run_idempotent(request, self.access, pay, self.get_exception_handler_context())


class RetryView(EstateAPIView):
    rate_scope = "pay"

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: PaymentResultSerializer,
            **PAY_ERRORS,
            409: error("transaction_not_retryable, and the payment refusals"),
        },
        summary="Retry a failed payment of mine",
    )
    def post(self, request: Request, cluster_id: str, transaction_id: str) -> Response:
        failed = access_own_transaction(self.access, transaction_id)

        def retry(key: str) -> Response:
            tx = transaction_retry(access=self.access, failed=failed, idempotency_key=key, origin=self.origin)
            return _payment_response(tx, self.access.cluster.currency)

        return run_idempotent(request, self.access, retry, self.get_exception_handler_context())


class WalletSerializer(serializers.Serializer):
    balance = MoneyField()
    currency = serializers.CharField()


class WalletView(EstateAPIView):
    @extend_schema(responses={200: WalletSerializer, **ERRORS}, summary="My wallet in this estate")
    def get(self, request: Request, cluster_id: str) -> Response:
        wallet = member_wallet(access=self.access)
        return Response(WalletSerializer({"balance": wallet.balance, "currency": self.access.cluster.currency}).data)


class WalletTransactionsView(EstateAPIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(TransactionSerializer), **ERRORS},
        summary="My ledger entries, newest first",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        listing = member_transaction_list(access=self.access)
        return listing_response(self, listing, TransactionSerializer, currency=self.access.cluster.currency)


class LeaveSerializer(serializers.Serializer):
    cluster_id = serializers.UUIDField()
    active = serializers.BooleanField()
    left_at = serializers.DateTimeField()


class LeaveView(EstateAPIView):
    @extend_schema(
        request=None,
        responses={200: LeaveSerializer, 409: error("last_admin"), **ERRORS},
        summary="Leave this estate",
        description="Ends the caller's membership (e.g. after being added to an estate they do not belong to). "
        "Their wallet and ledger entries stay; an admin can add them again. The estate's last admin "
        "cannot leave (409 last_admin): they make another member admin first.",
    )
    def post(self, request: Request, cluster_id: str) -> Response:
        membership = member_leave(access=self.access, origin=self.origin)
        return Response(
            {"cluster_id": membership.cluster_id, "active": membership.active, "left_at": membership.deactivated_at}
        )
