"""Resident endpoints for payments: top up the wallet through the estate's provider,
and pay a bill by card (a top-up of the shortfall, paid once verified)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_bill_as_member
from levy.api.idempotency import run_idempotent
from levy.api.members.views import IDEMPOTENCY_HEADER
from levy.api.pagination import LevyCursorPagination
from levy.api.payments_serializers import TopUpInputSerializer, TopUpSerializer
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.views import EstateAPIView
from levy.payments.selectors import access_own_top_up, member_top_ups
from levy.payments.services import bill_pay_by_card_start, topup_start

ERRORS = errors()
START_ERRORS = {
    409: error("provider_not_configured, idempotency_key_in_use"),
    422: error("idempotency_key_reused"),
    503: error("provider_unavailable, provider_refused (nothing was charged; start again)"),
    **ERRORS,
}


class TopUpListView(EstateAPIView):
    rate_scope = "top_up"

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(TopUpSerializer), **ERRORS},
        summary="My top-ups, newest first",
        operation_id="member_top_ups_list",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        paginator = LevyCursorPagination()
        page = paginator.paginate_queryset(member_top_ups(self.access), request, view=self)
        return paginator.get_paginated_response(TopUpSerializer(page, many=True).data)

    @extend_schema(
        request=TopUpInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: TopUpSerializer, **START_ERRORS},
        summary="Top up my wallet: returns the provider's checkout_url",
    )
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require_member()  # before the idempotency record: a non-member leaves no trace

        def start(key: str) -> Response:
            data = TopUpInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            top_up = topup_start(
                access=self.access, amount=data.validated_data["amount"], idempotency_key=key, origin=self.origin
            )
            return Response(TopUpSerializer(top_up).data, status=201)

        return run_idempotent(request, self.access, start, self.get_exception_handler_context())


class TopUpDetailView(EstateAPIView):
    @extend_schema(responses={200: TopUpSerializer, **ERRORS}, summary="One of my top-ups (poll it after checkout)")
    def get(self, request: Request, cluster_id: str, top_up_id: str) -> Response:
        return Response(TopUpSerializer(access_own_top_up(self.access, top_up_id)).data)


class PayByCardView(EstateAPIView):
    rate_scope = "top_up"

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: TopUpSerializer,
            **START_ERRORS,
            409: error(
                "wallet_covers_bill (pay from the wallet), provider_not_configured, and the payment refusals: "
                "bill_not_acknowledged, bill_already_paid, bill_cancelled, bill_waived, bill_disputed, "
                "payment_after_due_not_allowed"
            ),
        },
        summary="Pay a bill by card: a top-up of the shortfall; the bill is paid once it is verified",
    )
    def post(self, request: Request, cluster_id: str, bill_id: str) -> Response:
        bill = access_bill_as_member(self.access, bill_id)

        def start(key: str) -> Response:
            top_up = bill_pay_by_card_start(access=self.access, bill=bill, idempotency_key=key, origin=self.origin)
            return Response(TopUpSerializer(top_up).data, status=201)

        return run_idempotent(request, self.access, start, self.get_exception_handler_context())
