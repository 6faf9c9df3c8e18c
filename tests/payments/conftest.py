from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from levy.estates.models import Membership
from levy.payments.accounts import provider_account_save
from levy.payments.fake import FakeProvider, FakeProviderServer
from levy.payments.models import ProviderAccount, TopUp
from levy.payments.services import topup_start
from tests.conftest import Estate, access, new_key


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """The return page and webhooks are limited per client address, and every test's
    client is 127.0.0.1: start each test with fresh counters (as tests/api does)."""
    cache.clear()


@pytest.fixture
def fake(fake_provider_server: FakeProviderServer) -> FakeProvider:
    return fake_provider_server.fake


def connect(estate: Estate, fake: FakeProvider, provider: str = "paystack") -> ProviderAccount:
    """The estate's admin sets up an account with ``provider`` (and the fake, like the
    provider's dashboard, knows its webhook secret)."""
    secret = f"sk_test_{uuid.uuid4().hex}"
    hook = f"hash{uuid.uuid4().hex[:12]}" if provider == "flutterwave" else None
    account = provider_account_save(
        access=access(estate.admin), provider=provider, secret_key=secret, webhook_secret=hook, active=True
    )
    fake.register(secret_key=secret, webhook_secret=hook or "")
    return account


def start(member: Membership, amount: str = "5000.00", **kwargs: Any) -> TopUp:
    return topup_start(access=access(member), amount=Decimal(amount), idempotency_key=new_key("topup"), **kwargs)


def post_webhook(account: ProviderAccount, body: bytes, headers: dict[str, str], client: Client | None = None) -> Any:
    url = reverse("payments-webhook", kwargs={"account_id": account.pk})
    return (client or Client()).post(url, data=body, content_type="application/json", headers=headers)


def get_return(reference: str, client: Client | None = None) -> Any:
    return (client or Client()).get(reverse("payments-return"), {"reference": reference})
