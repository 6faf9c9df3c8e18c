from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "levy.api"
    label = "api"
    verbose_name = "API"
