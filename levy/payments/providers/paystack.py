"""Paystack (https://paystack.com/docs/api/): amounts in kobo; ``POST
/transaction/initialize`` returns the checkout's ``authorization_url``; ``GET
/transaction/verify/:reference`` is the account of record; webhooks carry
``x-paystack-signature``, the hex HMAC-SHA512 of the raw body keyed by the secret key,
and name the event (``charge.success``) but carry no event id: idempotency rests on
our reference. Paystack retries an unacknowledged webhook for up to 72 hours."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from decimal import Decimal
from typing import Any

from django.conf import settings

from levy.payments.providers.amounts import from_minor_units, to_minor_units
from levy.payments.providers.base import (
    Checkout,
    Credentials,
    MalformedWebhook,
    ProviderError,
    Verification,
    WebhookEvent,
    json_object,
    verification_from,
)
from levy.payments.providers.http import request_json

SIGNATURE_HEADER = "x-paystack-signature"
SUCCESS_EVENT = "charge.success"
PENDING_STATUSES = frozenset({"ongoing", "pending", "processing", "queued"})


def sign(secret_key: str, body: bytes) -> str:
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


class Paystack:
    name = "paystack"

    def __init__(self, credentials: Credentials, base_url: str | None = None):
        self.credentials = credentials
        self.base_url = (base_url or settings.LEVY_PAYSTACK_BASE_URL).rstrip("/")

    def initialize(self, *, reference: str, amount: Decimal, currency: str, email: str, callback_url: str) -> Checkout:
        answer = request_json(
            "POST",
            f"{self.base_url}/transaction/initialize",
            token=self.credentials.secret_key,
            payload={
                "email": email,
                "amount": str(to_minor_units(amount)),
                "currency": currency,
                "reference": reference,
                "callback_url": callback_url,
            },
        )
        data = answer.body.get("data")
        if answer.status != 200 or answer.body.get("status") is not True or not isinstance(data, dict):
            raise ProviderError(
                "The payment provider refused to start the payment.",
                code="provider_refused",
                details={"provider_message": str(answer.body.get("message", ""))[:200]},
            )
        url = data.get("authorization_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ProviderError(details={"problem": "no checkout URL in the answer"})
        return Checkout(url=url, provider_reference=str(data.get("access_code", "")))

    def verify(self, *, reference: str, provider_transaction_id: str = "") -> Verification:
        quoted = urllib.parse.quote(reference, safe="")
        answer = request_json("GET", f"{self.base_url}/transaction/verify/{quoted}", token=self.credentials.secret_key)
        return verification_from(
            answer,
            reference=reference,
            not_found=answer.status in (400, 404) and answer.body.get("status") is False,
            success_status="success",
            pending_statuses=PENDING_STATUSES,
            reference_key="reference",
            amount_of=from_minor_units,
        )

    def signature_valid(self, *, body: bytes, headers: Any) -> bool:
        given = headers.get(SIGNATURE_HEADER) or ""
        if not given or not self.credentials.secret_key:
            return False
        return hmac.compare_digest(sign(self.credentials.secret_key, body), given.strip().lower())

    def parse_webhook(self, body: bytes) -> WebhookEvent:
        payload = json_object(body)
        event, data = payload.get("event"), payload.get("data")
        if not isinstance(event, str) or not isinstance(data, dict):
            raise MalformedWebhook("expected an object with 'event' and 'data'")
        reference = data.get("reference")
        if not isinstance(reference, str) or not reference:
            raise MalformedWebhook("data.reference is missing")
        return WebhookEvent(
            name=event,
            reference=reference,
            is_charge_success=event == SUCCESS_EVENT,
            amount=from_minor_units(data.get("amount")),
            currency=str(data.get("currency", "")),
            provider_transaction_id=str(data.get("id", "")),
        )
