from django.apps import AppConfig


class MembersConfig(AppConfig):
    """No models (memberships are the estates app's): the services of a member's life in
    an estate and the import of members from a file, with its Celery task."""

    name = "levy.members"
    label = "members"
    verbose_name = "Members"
