"""Exactly once under real concurrency: threads on their own PostgreSQL connections
post the same webhook and load the return page at once, against the fake provider
over real HTTP. The test commits (``transaction=True``) so the database decides."""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse

from levy.payments import secrets
from levy.payments.fake import FakeProvider
from levy.payments.models import TopUp
from levy.payments.services import topups_sweep
from levy.wallets.models import Transaction, Wallet
from levy.wallets.selectors import ledger_balance
from tests.conftest import make_estate
from tests.payments.conftest import connect, get_return, post_webhook, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def race(calls: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


@pytest.mark.parametrize("provider", ["paystack", "flutterwave"])
def test_fifty_concurrent_webhooks_and_returns_credit_once(fake: FakeProvider, provider: str) -> None:
    estate = make_estate(residents=1)
    account = connect(estate, fake, provider)
    member = estate.residents[0]
    top_up = start(member, "12500.00")
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)

    def webhook() -> tuple[int, str]:
        response = post_webhook(account, body, headers, Client())
        return (response.status_code, response.json()["result"])

    def back() -> tuple[int, str]:
        return (get_return(top_up.reference, Client()).status_code, "return")

    def sweep() -> Any:
        return topups_sweep(now=top_up.expires_at)

    results = race([webhook] * 50 + [back] * 5 + [sweep] * 2)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    webhook_results = Counter(r for r in results[:50])
    assert set(webhook_results) <= {(200, "credited"), (200, "already_done")}
    assert webhook_results[(200, "credited")] <= 1
    assert results[50:55] == [(200, "return")] * 5
    entries = Transaction.objects.filter(idempotency_key=f"topup:{top_up.reference}")
    assert entries.count() == 1
    wallet = Wallet.objects.get(user=member.user, cluster=estate.cluster)
    assert wallet.balance == Decimal("12500.00") == ledger_balance(wallet)
    assert TopUp.objects.get(pk=top_up.pk).status == "credited"


@pytest.mark.parametrize("delivery", ["twice", "late"])
def test_the_fakes_own_webhooks_over_http_credit_once(fake: FakeProvider, live_server: Any, delivery: str) -> None:
    """End to end over real HTTP both ways: the fake provider posts its signed webhook to
    a live Levy (twice, or late after the return page already credited)."""
    estate = make_estate(residents=1)
    account = connect(estate, fake)
    fake.register(
        secret_key=secrets.unseal(account.secret_key_sealed),
        webhook_url=live_server.url + reverse("payments-webhook", kwargs={"account_id": account.pk}),
    )
    fake.behaviour.webhook = delivery
    fake.behaviour.webhook_delay_seconds = 0.5
    member = estate.residents[0]
    top_up = start(member, "3000.00")
    fake.pay(top_up.reference)
    if delivery == "late":
        assert get_return(top_up.reference, Client()).json()["status"] == "credited"
    deadline = time.monotonic() + 30
    expected = 2 if delivery == "twice" else 1
    while len(fake.webhooks_sent) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [status for _, status in fake.webhooks_sent] == [200] * expected
    assert Transaction.objects.filter(idempotency_key=f"topup:{top_up.reference}").count() == 1
    assert Wallet.objects.get(user=member.user, cluster=estate.cluster).balance == Decimal("3000.00")
