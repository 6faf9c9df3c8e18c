from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "levy.reports"
    label = "reports"
    verbose_name = "Receipts, statements and exports"
