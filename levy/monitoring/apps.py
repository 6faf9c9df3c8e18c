from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "levy.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        """Connect the request-id and metrics receivers (web and Celery processes)."""
        from celery import signals
        from django.core.signals import request_finished

        from levy.common import request_id
        from levy.monitoring import worker

        request_finished.connect(request_id.clear_request_id, dispatch_uid="levy.request_id.clear")
        receivers = [
            (signals.before_task_publish, request_id.add_request_id_header),
            (signals.task_prerun, request_id.bind_task_context),
            (signals.task_postrun, request_id.unbind_task_context),
            (signals.setup_logging, worker.configure_logging),
            (signals.worker_init, worker.on_worker_init),
            (signals.worker_ready, worker.on_worker_ready),
            (signals.worker_shutdown, worker.on_worker_shutdown),
            (signals.worker_process_init, worker.on_worker_process_init),
            (signals.worker_process_shutdown, worker.on_worker_process_shutdown),
            (signals.task_postrun, worker.on_task_postrun),
            (signals.task_success, worker.on_task_success),
            (signals.task_failure, worker.on_task_failure),
            (signals.task_retry, worker.on_task_retry),
        ]
        for signal, receiver in receivers:
            signal.connect(receiver, weak=False, dispatch_uid=f"levy.{receiver.__module__}.{receiver.__name__}")
