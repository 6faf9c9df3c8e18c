from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "levy.notifications"
    label = "notifications"
    verbose_name = "Notifications"
