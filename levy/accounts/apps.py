from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "levy.accounts"
    label = "accounts"
    verbose_name = "Accounts"
