from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "levy.audit"
    label = "audit"
    verbose_name = "Audit trail"
