from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "levy.common"
    label = "common"
