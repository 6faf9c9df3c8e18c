from django.apps import AppConfig


class EstatesConfig(AppConfig):
    name = "levy.estates"
    label = "estates"
    verbose_name = "Estates"
