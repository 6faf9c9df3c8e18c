"""The adapters against the local fake over real HTTP: each provider's units, verify
answers, signature schemes, and what a timeout or a 500 becomes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from decimal import Decimal

import pytest

from levy.payments.fake import FakeProvider
from levy.payments.providers.amounts import from_major_units, from_minor_units, to_minor_units
from levy.payments.providers.base import Credentials, MalformedWebhook, ProviderError, VerifiedStatus
from levy.payments.providers.flutterwave import Flutterwave
from levy.payments.providers.paystack import Paystack

SECRET = "sk_test_0123456789abcdef"
HASH = "my-secret-hash"


@pytest.fixture
def paystack(fake: FakeProvider) -> Paystack:
    fake.register(secret_key=SECRET)
    return Paystack(Credentials(secret_key=SECRET))


@pytest.fixture
def flutterwave(fake: FakeProvider) -> Flutterwave:
    fake.register(secret_key=SECRET, webhook_secret=HASH)
    return Flutterwave(Credentials(secret_key=SECRET, webhook_secret=HASH))


def test_amount_conversions_are_exact() -> None:
    assert to_minor_units(Decimal("1500.50")) == 150050
    assert to_minor_units(Decimal("0.01")) == 1
    with pytest.raises(ValueError, match="more than two decimal places"):
        to_minor_units(Decimal("1.005"))
    assert from_minor_units(150050) == Decimal("1500.50")
    assert from_minor_units("150050") == Decimal("1500.50")
    assert from_minor_units(1500.5) is None  # a float is never an amount
    assert from_minor_units(True) is None
    assert from_minor_units("15.5") is None  # kobo are whole
    assert from_major_units(Decimal("1500.5")) == Decimal("1500.50")
    assert from_major_units(1500) == Decimal("1500.00")
    assert from_major_units("100.001") == Decimal("100.001")  # kept exact: it will not match 100.00
    assert from_major_units("NaN") is None


def test_paystack_initialize_and_verify_in_kobo(paystack: Paystack, fake: FakeProvider) -> None:
    checkout = paystack.initialize(
        reference="REF1", amount=Decimal("1500.50"), currency="NGN", email="a@b.test", callback_url="http://x/r/"
    )
    assert checkout.url.endswith("/checkout/REF1")
    assert fake.charges["REF1"].amount == Decimal("1500.50")
    before = paystack.verify(reference="REF1")
    assert (before.status, before.raw_status) == (VerifiedStatus.FAILED, "abandoned")
    fake.pay("REF1", send_webhook=False)
    after = paystack.verify(reference="REF1")
    assert (after.status, after.amount, after.currency, after.reference) == (
        VerifiedStatus.SUCCESS,
        Decimal("1500.50"),
        "NGN",
        "REF1",
    )
    assert paystack.verify(reference="NOPE").status == VerifiedStatus.NOT_FOUND
    # Another account's key does not see the charge.
    assert Paystack(Credentials(secret_key="sk_other")).verify(reference="REF1").status == VerifiedStatus.NOT_FOUND


def test_flutterwave_initialize_and_verify_in_naira(flutterwave: Flutterwave, fake: FakeProvider) -> None:
    checkout = flutterwave.initialize(
        reference="FREF1", amount=Decimal("2500.00"), currency="NGN", email="a@b.test", callback_url="http://x/r/"
    )
    assert checkout.url.endswith("/checkout/FREF1")
    assert flutterwave.verify(reference="FREF1").status == VerifiedStatus.PENDING
    charge = fake.pay("FREF1", send_webhook=False)
    by_reference = flutterwave.verify(reference="FREF1")
    by_id = flutterwave.verify(reference="FREF1", provider_transaction_id=str(charge.id))
    for answer in (by_reference, by_id):
        assert (answer.status, answer.amount, answer.currency, answer.reference, answer.provider_transaction_id) == (
            VerifiedStatus.SUCCESS,
            Decimal("2500.00"),
            "NGN",
            "FREF1",
            str(charge.id),
        )
    assert flutterwave.verify(reference="NOPE").status == VerifiedStatus.NOT_FOUND


def test_paystack_signature_is_hmac_sha512_of_the_raw_body(paystack: Paystack) -> None:
    body = b'{"event":"charge.success","data":{"reference":"R","amount":100,"currency":"NGN"}}'
    good = hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()
    assert paystack.signature_valid(body=body, headers={"x-paystack-signature": good})
    assert not paystack.signature_valid(body=body + b" ", headers={"x-paystack-signature": good})
    # The same JSON re-serialised is other bytes: never accepted.
    reserialised = json.dumps(json.loads(body)).encode()
    assert not paystack.signature_valid(body=reserialised, headers={"x-paystack-signature": good})
    assert not paystack.signature_valid(body=body, headers={})
    event = paystack.parse_webhook(body)
    assert (event.reference, event.amount, event.is_charge_success) == ("R", Decimal("1.00"), True)
    with pytest.raises(MalformedWebhook):
        paystack.parse_webhook(b"not json")
    with pytest.raises(MalformedWebhook):
        paystack.parse_webhook(b'{"event":"charge.success","data":{}}')


def test_flutterwave_signature_new_and_legacy(flutterwave: Flutterwave) -> None:
    body = b'{"event":"charge.completed","data":{"tx_ref":"R","amount":1500.5,"currency":"NGN","status":"successful"}}'
    signature = base64.b64encode(hmac.new(HASH.encode(), body, hashlib.sha256).digest()).decode()
    assert flutterwave.signature_valid(body=body, headers={"flutterwave-signature": signature})
    assert not flutterwave.signature_valid(body=body[:-1], headers={"flutterwave-signature": signature})
    assert flutterwave.signature_valid(body=body, headers={"verif-hash": HASH})
    assert not flutterwave.signature_valid(body=body, headers={"verif-hash": "guess"})
    assert not flutterwave.signature_valid(body=body, headers={})
    event = flutterwave.parse_webhook(body)
    assert (event.reference, event.amount, event.is_charge_success) == ("R", Decimal("1500.50"), True)


@pytest.mark.parametrize("mode", ["timeout", "error"])
def test_a_provider_that_times_out_or_fails_is_a_provider_error(
    paystack: Paystack, fake: FakeProvider, mode: str
) -> None:
    fake.behaviour.initialize = mode
    fake.behaviour.timeout_seconds = 3
    started = time.monotonic()
    with pytest.raises(ProviderError) as raised:
        paystack.initialize(reference="T1", amount=Decimal("10.00"), currency="NGN", email="a@b.test", callback_url="")
    # two attempts of at most the 1 s timeout, and the backoff between them
    assert time.monotonic() - started < 3.5
    assert raised.value.code == "provider_unavailable"
    assert "T1" not in fake.charges
