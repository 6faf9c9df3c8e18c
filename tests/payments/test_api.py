"""The payment endpoints over HTTP: answers, errors in the shape of api.md, the database
afterwards, and the queries each request costs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from levy.billing.services import bill_acknowledge
from levy.payments.fake import FakeProvider
from levy.payments.models import ProviderAccount, TopUp
from tests.api.conftest import api_as, assert_error, base
from tests.conftest import Estate, access, new_key
from tests.payments.conftest import connect, get_return

pytestmark = pytest.mark.django_db


def test_admin_sets_a_provider_and_never_sees_the_secret_again(estate: Estate) -> None:
    admin = api_as(estate.admin)
    url = f"{base(estate)}/management/payment-providers/"
    secret = "sk_test_9f8e7d6c5b4a39281706"
    response = admin.client.put(url, {"provider": "paystack", "secret_key": secret, "active": True}, format="json")
    assert response.status_code == 200, response.json()
    account = ProviderAccount.objects.get()
    assert response.json() == {
        "id": str(account.pk),
        "provider": "paystack",
        "active": True,
        "public_key": "",
        "secret_key_hint": "sk_test_…1706",
        "webhook_secret_hint": "",
        "webhook_url": f"http://127.0.0.1:8000/api/v1/payments/webhooks/{account.pk}/",
        "updated_at": response.json()["updated_at"],
    }
    with CaptureQueriesContext(connection) as queries:
        listed = admin.client.get(url)
    assert secret not in listed.content.decode()
    assert [a["provider"] for a in listed.json()] == ["paystack"]
    assert len(queries) == 2  # the user with the membership and its estate, the accounts
    assert_error(
        admin.client.put(url, {"provider": "stripe", "secret_key": "x"}, format="json"),
        400,
        "validation_error",
        ("provider",),
    )
    assert_error(
        admin.client.put(url, {"provider": "flutterwave", "secret_key": "FLWSECK-1"}, format="json"),
        400,
        "validation_error",
        ("webhook_secret",),
    )


def test_resident_tops_up_through_checkout_and_return(estate: Estate, fake: FakeProvider) -> None:
    connect(estate, fake)
    member = estate.residents[0]
    api = api_as(member)
    url = f"{base(estate)}/top-ups/"
    assert_error(api.post(url, {"amount": "5000.00"}), 400, "idempotency_key_required")
    assert_error(api.post(url, {"amount": 5000.5}, key=new_key()), 400, "validation_error", ("amount",))
    with CaptureQueriesContext(connection) as queries:
        response = api.post(url, {"amount": "5000.00"}, key="t-1")
    assert response.status_code == 201, response.json()
    # user, membership, idempotency claim, key lookup, active account, the top-up and its
    # audit in one transaction (a savepoint pair inside the test's), the checkout URL,
    # the idempotency record
    assert len(queries) == 10, [q["sql"][:70] for q in queries]
    body = response.json()
    assert (body["status"], body["amount"], body["currency"], body["provider"]) == (
        "pending",
        "5000.00",
        "NGN",
        "paystack",
    )
    assert body["checkout_url"].endswith(f"/checkout/{body['reference']}")
    assert api.post(url, {"amount": "5000.00"}, key="t-1").json() == body  # replayed
    fake.pay(body["reference"], send_webhook=False)
    assert get_return(body["reference"]).json()["status"] == "credited"
    with CaptureQueriesContext(connection) as queries:
        detail = api.get(f"{url}{body['id']}/")
    assert len(queries) == 2  # the user with the membership and its estate, the top-up
    assert (detail.json()["status"], detail.json()["transaction_id"] is not None) == ("credited", True)
    assert api.get(f"{base(estate)}/wallet/").json()["balance"] == "5000.00"
    # Someone else's top-up is not found.
    assert_error(api_as(estate.residents[1]).get(f"{url}{body['id']}/"), 404, "not_found")


def test_provider_down_is_a_503_and_nothing_is_pending(estate: Estate, fake: FakeProvider) -> None:
    connect(estate, fake)
    fake.behaviour.initialize = "error"
    response = api_as(estate.residents[0]).post(f"{base(estate)}/top-ups/", {"amount": "100.00"}, key=new_key())
    assert_error(response, 503, "provider_unavailable")
    assert TopUp.objects.get().status == "failed"


def test_without_a_provider_top_up_is_refused(estate: Estate) -> None:
    response = api_as(estate.residents[0]).post(f"{base(estate)}/top-ups/", {"amount": "100.00"}, key=new_key())
    assert_error(response, 409, "provider_not_configured")


def test_pay_by_card_endpoint_starts_a_top_up_of_the_shortfall(estate: Estate, fake: FakeProvider) -> None:
    connect(estate, fake)
    member = estate.residents[0]
    estate.fund(member, "500.00")
    bill = estate.wide_bill(amount=Decimal("1500.00"))
    bill_acknowledge(access=access(member), bill=bill)
    response = api_as(member).post(f"{base(estate)}/bills/{bill.pk}/pay-by-card/", key=new_key())
    assert response.status_code == 201, response.json()
    assert (response.json()["amount"], response.json()["bill_id"]) == ("1000.00", str(bill.pk))
    assert_error(api_as(member).post(f"{base(estate)}/bills/{bill.pk}/pay-by-card/"), 400, "idempotency_key_required")


def test_return_for_an_unknown_reference_is_not_found() -> None:
    assert_error(get_return("LVYNOSUCHREFERENCE"), 404, "not_found")
    assert_error(get_return(""), 404, "not_found")
