from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "levy.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # The notifications about a bill reach whom billing's rules say (levy/billing/recipients.py).
        from levy.billing import recipients

        recipients.register()
