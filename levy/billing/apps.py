from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "levy.billing"
    label = "billing"
    verbose_name = "Billing"
