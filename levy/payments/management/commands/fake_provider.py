"""Run the local fake of Paystack and Flutterwave (levy/payments/fake.py).

``manage.py fake_provider --port 8765`` serves both APIs on one port; point Levy at it
with LEVY_PAYSTACK_BASE_URL=http://127.0.0.1:8765/paystack and
LEVY_FLUTTERWAVE_BASE_URL=http://127.0.0.1:8765/flutterwave. Like a provider's
dashboard, it knows each estate account's webhook URL and secret: it reads them from
Levy's database the first time a secret key is used.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from levy.payments.fake import FakeAccount, FakeProviderServer


def account_from_database(secret_key: str) -> FakeAccount | None:
    from levy.payments.accounts import webhook_url
    from levy.payments.models import ProviderAccount
    from levy.payments.secrets import SecretUnreadableError, unseal

    for account in ProviderAccount.objects.all():
        try:
            if unseal(account.secret_key_sealed) != secret_key:
                continue
            hook = unseal(account.webhook_secret_sealed) if account.webhook_secret_sealed else ""
        except SecretUnreadableError:
            continue
        return FakeAccount(secret_key=secret_key, webhook_url=webhook_url(account), webhook_secret=hook)
    return None


class Command(BaseCommand):
    help = "Serve a local fake of the Paystack and Flutterwave APIs, checkout page and webhooks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--webhook", choices=["once", "twice", "late", "none"], default="once")

    def handle(self, *args: Any, **options: Any) -> None:
        server = FakeProviderServer(options["host"], options["port"])
        server.fake.behaviour.webhook = options["webhook"]
        server.fake.resolve_account = account_from_database
        server.start()
        self.stdout.write(
            f"Fake payment provider at {server.url} (Paystack {server.paystack_url}, "
            f"Flutterwave {server.flutterwave_url}); Ctrl-C stops it."
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()
