"""Re-seal every stored provider secret under the first key of LEVY_PROVIDER_SECRETS_KEY
(key rotation, docs/operations.md "Payment providers"), or check that every one opens."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from levy.payments.models import ProviderAccount
from levy.payments.secrets import SecretUnreadableError, reseal, unseal


class Command(BaseCommand):
    help = "Check (default) or re-seal (--reseal) the estates' provider secrets."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--reseal", action="store_true", help="seal every secret with the first key")

    def handle(self, *args: Any, **options: Any) -> None:
        unreadable = []
        with transaction.atomic():
            for account in ProviderAccount.objects.select_for_update().order_by("pk"):
                fields = ["secret_key_sealed"] + (["webhook_secret_sealed"] if account.webhook_secret_sealed else [])
                try:
                    for field in fields:
                        unseal(getattr(account, field))
                        if options["reseal"]:
                            setattr(account, field, reseal(getattr(account, field)))
                except SecretUnreadableError:
                    unreadable.append(str(account.pk))
                    continue
                if options["reseal"]:
                    account.save(update_fields=fields)
            if unreadable:
                raise CommandError(f"secrets no configured key opens, accounts: {', '.join(unreadable)}")
        count = ProviderAccount.objects.count()
        self.stdout.write(f"{count} accounts, every secret {'re-sealed' if options['reseal'] else 'readable'}.")
