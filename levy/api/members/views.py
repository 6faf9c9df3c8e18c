"""Endpoints for residents: their bills, acknowledgement, disputes, payment, wallet."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.api.idempotency import HEADER, run_idempotent
from levy.api.pagination import LevyCursorPagination
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import DisputeSerializer, MemberBillSerializer, MoneyField, TransactionSerializer
from levy.api.views import EstateAPIView
from levy.billing.models import BillCategory
from levy.billing.selectors import access_bill_as_member, bills_applying_to, decorate_member_bills, member_bills
from levy.billing.services import bill_acknowledge_with_status, bill_dispute
from levy.billing.status import BillStatus
from levy.wallets.models import Wallet
from levy.wallets.services import (
    access_own_transaction,
    bill_pay,
    member_transactions,
    transaction_retry,
    wallet_ensure,
)

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


def _one_member_bill(view: EstateAPIView, bill_id: Any) -> Any:
    bill = access_bill_as_member(view.access, bill_id)
    decorate_member_bills([bill], membership=view.access.require_member())
    return bill


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
        membership = self.access.require_member()
        paginator = LevyCursorPagination()
        if "status" in filters.validated_data:
            # The status is derived in SQL to filter on it before paginating.
            bills = member_bills(membership=membership).filter(status=filters.validated_data["status"])
            if "category" in filters.validated_data:
                bills = bills.filter(category=filters.validated_data["category"])
            page = paginator.paginate_queryset(bills, request, view=self)
        else:
            # Paginate the bills themselves, then read the member's facts for the page.
            plain = bills_applying_to(membership).order_by("-created_at", "-id")
            if "category" in filters.validated_data:
                plain = plain.filter(category=filters.validated_data["category"])
            page = paginator.paginate_queryset(plain, request, view=self) or []
            for bill in page:
                bill.cluster = self.access.cluster
            decorate_member_bills(page, membership=membership)
        return paginator.get_paginated_response(MemberBillSerializer(page, many=True).data)


class MemberBillDetailView(EstateAPIView):
    @extend_schema(responses={200: MemberBillSerializer, **ERRORS}, summary="One of my bills")
    def get(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        return Response(MemberBillSerializer(_one_member_bill(self, bill_id)).data)


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
        membership = self.access.require_member()
        wallet = Wallet.objects.filter(cluster=self.access.cluster, user_id=membership.user_id).first()
        if wallet is None:
            wallet = wallet_ensure(cluster=self.access.cluster, user=self.access.user)
        return Response(WalletSerializer({"balance": wallet.balance, "currency": self.access.cluster.currency}).data)


class WalletTransactionsView(EstateAPIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(TransactionSerializer), **ERRORS},
        summary="My ledger entries, newest first",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        paginator = LevyCursorPagination()
        page = paginator.paginate_queryset(member_transactions(self.access), request, view=self)
        data = TransactionSerializer(page, many=True, context={"currency": self.access.cluster.currency}).data
        return paginator.get_paginated_response(data)
