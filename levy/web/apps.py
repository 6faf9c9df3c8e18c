from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "levy.web"
    label = "web"
    verbose_name = "Web pages"
