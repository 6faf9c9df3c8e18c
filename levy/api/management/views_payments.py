"""Management endpoints for payments: the estate's provider accounts, its top-ups and
the anomalies providers reported."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_transaction
from levy.api.idempotency import run_idempotent
from levy.api.members.views import IDEMPOTENCY_HEADER
from levy.api.pagination import LevyCursorPagination
from levy.api.payments_serializers import (
    ManagedTopUpSerializer,
    PaymentAnomalySerializer,
    ProviderAccountInputSerializer,
    ProviderAccountSerializer,
)
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import TransactionSerializer
from levy.api.views import EstateAPIView
from levy.billing.payments import bill_payment_refund
from levy.estates.permissions import PaymentsPermissions
from levy.payments.accounts import provider_account_save
from levy.payments.models import TopUpStatus
from levy.payments.selectors import cluster_payment_anomalies, cluster_top_ups, provider_accounts

ERRORS = errors()


def paginate(view: EstateAPIView, queryset: QuerySet[Any], serializer: type[serializers.Serializer]) -> Response:
    paginator = LevyCursorPagination()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


class ProviderAccountListView(EstateAPIView):
    @extend_schema(
        responses={200: ProviderAccountSerializer(many=True), **ERRORS},
        summary="The estate's payment provider accounts (secrets as hints only)",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        accounts = provider_accounts(self.access)
        return Response(ProviderAccountSerializer(accounts, many=True).data)

    @extend_schema(
        request=ProviderAccountInputSerializer,
        responses={200: ProviderAccountSerializer, **ERRORS, 403: error("permission_denied (estate admins only)")},
        summary="Set the estate's account with a provider (created the first time; secrets are write-only)",
    )
    def put(self, request: Request, cluster_id: str) -> Response:
        data = ProviderAccountInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = provider_account_save(access=self.access, origin=self.origin, **data.validated_data)
        return Response(ProviderAccountSerializer(account).data)


class TopUpFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TopUpStatus.choices, required=False)


class ManagedTopUpListView(EstateAPIView):
    @extend_schema(
        parameters=[TopUpFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(ManagedTopUpSerializer), **ERRORS},
        summary="Top-ups of the estate's members, newest first; ?status=mismatch lists the flagged ones",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        filters = TopUpFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        top_ups = cluster_top_ups(self.access, status=filters.validated_data.get("status"))
        return paginate(self, top_ups, ManagedTopUpSerializer)


class PaymentAnomalyListView(EstateAPIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(PaymentAnomalySerializer), **ERRORS},
        summary="What providers reported that was not credited (mismatches, unknown references)",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        return paginate(self, cluster_payment_anomalies(self.access), PaymentAnomalySerializer)


class RefundInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, trim_whitespace=True)


class TransactionRefundView(EstateAPIView):
    rate_scope = "credit"

    @extend_schema(
        request=RefundInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: TransactionSerializer,
            403: error("permission_denied (ManageTransaction: admins and treasurers)"),
            409: error(
                "transaction_not_refundable, payment_already_refunded, "
                "self_refund_not_allowed, wallet_balance_limit, idempotency_key_in_use"
            ),
            422: error("idempotency_key_reused"),
            **ERRORS,
        },
        summary="Refund a payment to the payer's wallet, with a reason (a reversing entry, once per payment)",
    )
    def post(self, request: Request, cluster_id: str, transaction_id: str) -> Response:
        self.access.require(PaymentsPermissions.ManageTransaction)
        payment = access_transaction(self.access, transaction_id)

        def refund(key: str) -> Response:
            data = RefundInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            tx = bill_payment_refund(
                access=self.access,
                payment=payment,
                idempotency_key=key,
                note=data.validated_data["reason"],
                origin=self.origin,
            )
            body = TransactionSerializer(tx, context={"currency": self.access.cluster.currency}).data
            return Response(body, status=201)

        return run_idempotent(request, self.access, refund, self.get_exception_handler_context())
