"""Endpoints for estate admins, treasurers and auditors about the ledger: its entries,
and money received for a member (``ManageWallet``).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_membership
from levy.api.idempotency import HEADER, run_idempotent
from levy.api.pagination import listing_response
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import (
    MoneyField,
    TransactionSerializer,
)
from levy.api.views import EstateAPIView
from levy.estates.permissions import PaymentsPermissions
from levy.wallets.models import TransactionStatus, TransactionType
from levy.wallets.selectors import TransactionFilters, transaction_list
from levy.wallets.services import wallet_credit

ERRORS = errors()


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
