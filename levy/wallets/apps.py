from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "levy.wallets"
    label = "wallets"
    verbose_name = "Wallets and ledger"
