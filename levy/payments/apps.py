from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "levy.payments"
    label = "payments"
    verbose_name = "Payment providers and top-ups"
