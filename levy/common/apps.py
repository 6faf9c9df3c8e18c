from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "levy.common"
    label = "common"

    def ready(self) -> None:
        """Around each Celery task, the connection rules of a request (task_db)."""
        from celery import signals

        from levy.common.task_db import close_old_connections_around_task

        signals.task_prerun.connect(close_old_connections_around_task, weak=False, dispatch_uid="levy.task_db.prerun")
        signals.task_postrun.connect(close_old_connections_around_task, weak=False, dispatch_uid="levy.task_db.postrun")
