"""The Celery worker's side: its logging, its metrics, and the port that serves them.

A worker's counters live in its pool processes. With ``LEVY_WORKER_METRICS_PORT``
set, the worker's main process makes a private directory before it starts the pool,
the pool processes write their counters there (prometheus_client's multiprocess
mode), and the main process serves them all on that port at ``/metrics`` (behind
``LEVY_METRICS_TOKEN`` if set). Without the port, nothing is written anywhere: the
counters stay in memory. docs/decisions/0008-observability.md says why the worker
serves its own port rather than sharing the web server's directory.
"""

from __future__ import annotations

import glob
import json
import logging
import logging.config
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psutil
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from levy.monitoring.metrics import CELERY_TASKS, PROCESS_RSS, record_resident_memory, resident_memory
from levy.monitoring.views import token_accepted

logger = logging.getLogger("levy.monitoring")

WORKER = "worker"


class _WorkerState:
    in_worker = False
    directory: str | None = None
    server: WSGIServer | None = None
    thread: threading.Thread | None = None


state = _WorkerState()


# --- logging ---------------------------------------------------------------------------------


def configure_logging(loglevel: Any = None, logfile: Any = None, **kwargs: Any) -> None:
    """``setup_logging`` receiver: the worker logs through Levy's LOGGING (text or JSON,
    with request and task ids) instead of Celery's own format; ``-l`` sets the level
    and ``-f`` the file."""
    logging.config.dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if loglevel:
        root.setLevel(loglevel)
    if logfile:
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                replacement = logging.FileHandler(str(logfile))
                replacement.setFormatter(handler.formatter)
                for log_filter in handler.filters:
                    replacement.addFilter(log_filter)
                root.removeHandler(handler)
                root.addHandler(replacement)


# --- metrics in the pool processes -----------------------------------------------------------


def on_worker_init(**kwargs: Any) -> None:
    """``worker_init`` (main process, before the pool starts): choose where the pool
    processes' counters go. Every Levy metric has labels, so none has written a value
    yet."""
    state.in_worker = True
    if settings.LEVY_WORKER_METRICS_PORT is None:
        # Counters stay in each process's memory: never in a directory that a web
        # server on this machine (PROMETHEUS_MULTIPROC_DIR) would read or empty.
        values.ValueClass = values.MutexValue
        return
    directory = tempfile.mkdtemp(prefix="levy-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()
    state.directory = directory


def on_worker_process_init(**kwargs: Any) -> None:
    record_resident_memory(WORKER)


def on_task_postrun(**kwargs: Any) -> None:
    if state.in_worker:
        record_resident_memory(WORKER)


def on_worker_process_shutdown(**kwargs: Any) -> None:
    if state.directory:
        mark_process_dead(os.getpid(), state.directory)


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


def on_task_success(sender: Any = None, **kwargs: Any) -> None:
    CELERY_TASKS.labels(task=_task_name(sender), outcome="succeeded").inc()


def on_task_failure(sender: Any = None, **kwargs: Any) -> None:
    CELERY_TASKS.labels(task=_task_name(sender), outcome="failed").inc()


def on_task_retry(sender: Any = None, **kwargs: Any) -> None:
    CELERY_TASKS.labels(task=_task_name(sender), outcome="retried").inc()


# --- the metrics port (main process) ---------------------------------------------------------


def forget_dead_processes(directory: str) -> None:
    """Drop the memory gauge of pool processes that are gone (killed, or replaced)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        try:
            pid = int(os.path.basename(path).rsplit("_", 1)[1].removesuffix(".db"))
        except ValueError:
            continue
        if not psutil.pid_exists(pid):
            mark_process_dead(pid, directory)


class WorkerCollector:
    """The pool processes' files, plus the main process's own memory (read here, not
    written to a file: this runs in the serving thread, and the main process forks new
    pool processes at any time)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.files = MultiProcessCollector(None, path=directory)

    def collect(self) -> Iterator[Metric]:
        forget_dead_processes(self.directory)
        labels = {"process": WORKER, "pid": str(os.getpid())}
        rss = float(resident_memory())
        found = False
        for family in self.files.collect():
            if family.name == PROCESS_RSS._name:
                # A solo or threads pool runs tasks in the main process, which then
                # has a file of its own: the fresh reading replaces it.
                family.samples = [sample for sample in family.samples if sample.labels != labels]
                family.add_sample(family.name, labels, rss)
                found = True
            yield family
        if not found:
            family = GaugeMetricFamily(PROCESS_RSS._name, PROCESS_RSS._documentation, labels=list(labels))
            family.add_metric(list(labels.values()), rss)
            yield family


def render_worker_metrics(directory: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(directory))
    return generate_latest(registry)


def _json_error(start_response: Callable[..., Any], status: str, code: str, message: str) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if code == "not_authenticated":
        headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
    start_response(status, headers)
    return [body]


def metrics_app(directory: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in {"/metrics", "/metrics/"}:
            return _json_error(start_response, "404 Not Found", "not_found", "Not found: the metrics are at /metrics.")
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            return _json_error(start_response, "405 Method Not Allowed", "method_not_allowed", "Use GET.")
        token = settings.LEVY_METRICS_TOKEN
        if token and not token_accepted(environ.get("HTTP_AUTHORIZATION"), token):
            return _json_error(
                start_response,
                "401 Unauthorized",
                "not_authenticated",
                "Send the metrics token as 'Authorization: Bearer <token>'.",
            )
        body = render_worker_metrics(directory)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def on_worker_ready(**kwargs: Any) -> None:
    """``worker_ready`` (main process, pool started): serve the metrics."""
    address, port = settings.LEVY_WORKER_METRICS_ADDR, settings.LEVY_WORKER_METRICS_PORT
    if state.directory is None or state.server is not None or port is None:
        return
    try:
        server = make_server(address, port, metrics_app(state.directory), handler_class=_QuietHandler)
    except OSError as exc:
        logger.error("worker metrics: cannot listen on %s:%s: %s", address, port, exc)
        return
    state.server = server
    state.thread = threading.Thread(target=server.serve_forever, name="levy-worker-metrics", daemon=True)
    state.thread.start()
    logger.info("worker metrics on http://%s:%s/metrics (files in %s)", address, server.server_port, state.directory)


def on_worker_shutdown(**kwargs: Any) -> None:
    server, state.server = state.server, None
    if server is not None:
        server.shutdown()
        server.server_close()
    if state.directory:
        shutil.rmtree(state.directory, ignore_errors=True)
