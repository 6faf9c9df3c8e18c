"""The one interface every payment provider adapter implements.

Adapters speak HTTP to the provider and nothing else: they never touch the database,
so a service calls them outside any transaction. Amounts cross the interface as
``Decimal`` in the currency's main unit (naira); each adapter converts to and from its
provider's unit (Paystack: kobo, integers; Flutterwave: naira, decimals).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from levy.common.errors import UpstreamError


class ProviderError(UpstreamError):
    """The provider could not be reached, timed out, or answered with an error.
    Nothing is known about the payment: the caller may retry later."""

    code = "provider_unavailable"
    default_message = "The payment provider could not be reached. Try again in a few minutes."


class VerifiedStatus(enum.StrEnum):
    SUCCESS = "success"  # the provider holds the money
    PENDING = "pending"  # not paid yet (or still being processed)
    FAILED = "failed"  # the attempt failed or was abandoned
    NOT_FOUND = "not_found"  # the provider does not know the reference


@dataclass(frozen=True)
class Checkout:
    url: str
    provider_reference: str = ""


@dataclass(frozen=True)
class Verification:
    """The provider's own account of a payment, from its verify call."""

    status: VerifiedStatus
    reference: str = ""
    amount: Decimal | None = None
    currency: str = ""
    provider_transaction_id: str = ""
    raw_status: str = ""


@dataclass(frozen=True)
class WebhookEvent:
    """A parsed webhook: only a successful charge matters to Levy (``is_charge_success``);
    its amount and currency are what the payload claims, checked against the top-up and
    then against the provider's verify answer."""

    name: str
    reference: str
    is_charge_success: bool
    amount: Decimal | None = None
    currency: str = ""
    provider_transaction_id: str = ""


class MalformedWebhook(Exception):
    """The body is not a webhook of this provider (not JSON, missing fields)."""


@dataclass(frozen=True)
class Credentials:
    secret_key: str
    webhook_secret: str = ""
    public_key: str = ""


class PaymentProvider(Protocol):
    name: str

    def initialize(
        self, *, reference: str, amount: Decimal, currency: str, email: str, callback_url: str
    ) -> Checkout: ...

    def verify(self, *, reference: str, provider_transaction_id: str = "") -> Verification: ...

    def signature_valid(self, *, body: bytes, headers: Any) -> bool: ...

    def parse_webhook(self, body: bytes) -> WebhookEvent: ...


def verification_from(
    answer: Any,
    *,
    reference: str,
    not_found: bool,
    success_status: str,
    pending_statuses: frozenset[str],
    reference_key: str,
    amount_of: Callable[[Any], Decimal | None],
) -> Verification:
    """A provider's verify answer (``HttpAnswer``) as a ``Verification``: each adapter
    says how its provider spells "not found", "paid", "pending", the reference and the
    amount's unit."""
    data = answer.body.get("data")
    if not_found:
        return Verification(VerifiedStatus.NOT_FOUND, reference=reference)
    if answer.status != 200 or not isinstance(data, dict):
        raise ProviderError(details={"problem": f"verify answered HTTP {answer.status}"})
    raw_status = str(data.get("status", ""))
    if raw_status == success_status:
        status = VerifiedStatus.SUCCESS
    elif raw_status in pending_statuses:
        status = VerifiedStatus.PENDING
    else:
        status = VerifiedStatus.FAILED
    return Verification(
        status,
        reference=str(data.get(reference_key, "")),
        amount=amount_of(data.get("amount")),
        currency=str(data.get("currency", "")),
        provider_transaction_id=str(data.get("id", "")),
        raw_status=raw_status,
    )


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object, numbers with a fraction read as Decimal."""
    try:
        payload = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise MalformedWebhook("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedWebhook("the body is not a JSON object")
    return payload
