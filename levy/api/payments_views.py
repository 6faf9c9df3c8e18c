"""The provider-facing endpoints: the webhook (signed, no user) and the return from
checkout (the resident's browser, before or without a token)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from levy.api.errors import ApiError
from levy.api.payments_serializers import TopUpReturnSerializer, WebhookAnswerSerializer
from levy.api.schema import error, errors
from levy.api.views import LevyAPIView
from levy.payments.services import WebhookRejected, topup_return, webhook_receive

logger = logging.getLogger("levy.payments")


class ProviderFacingView(LevyAPIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]


class WebhookView(ProviderFacingView):
    rate_scope = "webhook"

    @extend_schema(
        request={"application/json": {"type": "object"}},
        auth=[],
        responses={
            200: WebhookAnswerSerializer,
            400: error("validation_error (not this provider's webhook)"),
            401: error("invalid_signature"),
            404: error("not_found (no such account)"),
            413: error("request_too_large"),
            503: error(
                "provider_unavailable, payment_not_confirmed, credit_failed (the provider sends it again later)"
            ),
        },
        summary="A payment provider's webhook for one estate account (signature checked on the raw body)",
    )
    def post(self, request: Request, account_id: str) -> Response:
        try:
            body = request.body  # the raw bytes, never re-serialised JSON
        except RequestDataTooBig:
            raise ApiError(413, "request_too_large", "The body is too large for a webhook.") from None
        try:
            outcome = webhook_receive(account_id=account_id, body=body, headers=request.headers)
        except WebhookRejected as exc:
            raise ApiError(401, exc.code, exc.message) from None
        except DatabaseError:
            # Nothing was credited (the transaction rolled back): a non-2xx answer makes the
            # provider send the webhook again, and the sweep verifies the top-up meanwhile.
            logger.exception("webhook could not be recorded", extra={"account_id": account_id})
            raise ApiError(
                503, "credit_failed", "The payment could not be recorded now; send it again later."
            ) from None
        return Response(WebhookAnswerSerializer({"result": outcome.result, "reference": outcome.reference}).data)


class TopUpReturnView(ProviderFacingView):
    rate_scope = "top_up_return"

    @extend_schema(
        auth=[],
        parameters=[
            OpenApiParameter("reference", str, description="Paystack appends it (and trxref)."),
            OpenApiParameter("tx_ref", str, description="Flutterwave appends it (with status and transaction_id)."),
        ],
        responses={200: TopUpReturnSerializer, **errors()},
        summary="The resident is back from checkout: verify with the provider and credit",
    )
    def get(self, request: Request) -> Response:
        reference = request.query_params.get("reference") or request.query_params.get("tx_ref") or ""
        top_up = topup_return(reference=reference)
        return Response(
            TopUpReturnSerializer(
                {
                    "reference": top_up.reference,
                    "status": top_up.status,
                    "amount": top_up.amount,
                    "currency": top_up.currency,
                    "bill_outcome": top_up.bill_outcome,
                }
            ).data
        )
