"""Flutterwave v3 (https://developer.flutterwave.com/): amounts in naira (not kobo);
``POST /v3/payments`` returns the hosted checkout ``link``; ``GET
/v3/transactions/{id}/verify`` (or ``/v3/transactions/verify_by_reference?tx_ref=``
when only our reference is known) is the account of record. Webhooks carry either the
newer ``flutterwave-signature`` — the base64 HMAC-SHA256 of the raw body keyed by the
dashboard's secret hash — or the legacy ``verif-hash``, the secret hash itself; the
success event is ``charge.completed`` with ``data.status`` ``successful``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from decimal import Decimal
from typing import Any

from django.conf import settings

from levy.payments.providers.amounts import from_major_units, major_units_text
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

SIGNATURE_HEADER = "flutterwave-signature"
LEGACY_HEADER = "verif-hash"
SUCCESS_EVENT = "charge.completed"
PENDING_STATUSES = frozenset({"pending", "processing"})


def sign(secret_hash: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret_hash.encode(), body, hashlib.sha256).digest()).decode()


class Flutterwave:
    name = "flutterwave"

    def __init__(self, credentials: Credentials, base_url: str | None = None):
        self.credentials = credentials
        self.base_url = (base_url or settings.LEVY_FLUTTERWAVE_BASE_URL).rstrip("/")

    def initialize(self, *, reference: str, amount: Decimal, currency: str, email: str, callback_url: str) -> Checkout:
        answer = request_json(
            "POST",
            f"{self.base_url}/v3/payments",
            token=self.credentials.secret_key,
            payload={
                "tx_ref": reference,
                "amount": major_units_text(amount),
                "currency": currency,
                "redirect_url": callback_url,
                "customer": {"email": email},
            },
        )
        data = answer.body.get("data")
        if answer.status != 200 or answer.body.get("status") != "success" or not isinstance(data, dict):
            raise ProviderError(
                "The payment provider refused to start the payment.",
                code="provider_refused",
                details={"provider_message": str(answer.body.get("message", ""))[:200]},
            )
        link = data.get("link")
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise ProviderError(details={"problem": "no checkout link in the answer"})
        return Checkout(url=link)

    def verify(self, *, reference: str, provider_transaction_id: str = "") -> Verification:
        if provider_transaction_id.isdigit():
            url = f"{self.base_url}/v3/transactions/{provider_transaction_id}/verify"
        else:
            url = f"{self.base_url}/v3/transactions/verify_by_reference?tx_ref={urllib.parse.quote(reference, safe='')}"
        answer = request_json("GET", url, token=self.credentials.secret_key)
        return verification_from(
            answer,
            reference=reference,
            not_found=answer.status in (400, 404) and answer.body.get("status") == "error",
            success_status="successful",
            pending_statuses=PENDING_STATUSES,
            reference_key="tx_ref",
            amount_of=from_major_units,
        )

    def signature_valid(self, *, body: bytes, headers: Any) -> bool:
        secret = self.credentials.webhook_secret
        if not secret:
            return False
        signature = (headers.get(SIGNATURE_HEADER) or "").strip()
        if signature:
            return hmac.compare_digest(sign(secret, body), signature)
        legacy = (headers.get(LEGACY_HEADER) or "").strip()
        return bool(legacy) and hmac.compare_digest(secret, legacy)

    def parse_webhook(self, body: bytes) -> WebhookEvent:
        payload = json_object(body)
        event, data = payload.get("event"), payload.get("data")
        if not isinstance(event, str) or not isinstance(data, dict):
            raise MalformedWebhook("expected an object with 'event' and 'data'")
        reference = data.get("tx_ref")
        if not isinstance(reference, str) or not reference:
            raise MalformedWebhook("data.tx_ref is missing")
        return WebhookEvent(
            name=event,
            reference=reference,
            is_charge_success=event == SUCCESS_EVENT and data.get("status") == "successful",
            amount=from_major_units(data.get("amount")),
            currency=str(data.get("currency", "")),
            provider_transaction_id=str(data.get("id", "")),
        )
