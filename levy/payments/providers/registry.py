"""The adapter for an estate's provider account."""

from __future__ import annotations

from typing import TYPE_CHECKING

from levy.payments.providers.base import Credentials, PaymentProvider
from levy.payments.providers.flutterwave import Flutterwave
from levy.payments.providers.paystack import Paystack
from levy.payments.secrets import unseal

if TYPE_CHECKING:
    from levy.payments.models import ProviderAccount

ADAPTERS: dict[str, type[Paystack] | type[Flutterwave]] = {"paystack": Paystack, "flutterwave": Flutterwave}


def adapter_for(account: ProviderAccount) -> PaymentProvider:
    credentials = Credentials(
        secret_key=unseal(account.secret_key_sealed),
        webhook_secret=unseal(account.webhook_secret_sealed) if account.webhook_secret_sealed else "",
        public_key=account.public_key,
    )
    return ADAPTERS[account.provider](credentials)
