"""gunicorn configuration for Levy's web process (``gunicorn -c config/gunicorn.conf.py config.wsgi``).

Every value comes from the environment so the same file serves production, the
deployment rehearsal and the benchmark.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

# LEVY_BIND wins; platforms that assign a port announce it in PORT.
bind = os.environ.get("LEVY_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Sync workers: requests are short and database-bound; one process per core plus one.
workers = int(os.environ.get("WEB_CONCURRENCY", str(multiprocessing.cpu_count() + 1)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then so a slow leak cannot grow without bound (0 = never).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Addresses of the proxy in front (comma-separated; CIDR ranges allowed): gunicorn takes
# the scheme from X-Forwarded-* only from them. Django reads X-Forwarded-Proto itself
# (SECURE_PROXY_SSL_HEADER), whoever sent it, so gunicorn must be reachable only
# through the proxy, and the proxy must overwrite that header.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The workers' heartbeat files: on a disk-backed /tmp (container overlays) the heartbeat
# can stall a worker, so use memory when there is some.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)  # noqa: S108 - a directory, not a predictable file
# gunicorn opens a control socket at ~/.gunicorn/gunicorn.ctl unless told otherwise:
# every gunicorn of one user on a host shares that path (the last one started takes it
# over), and a read-only home (systemd's ProtectHome, a container) has no room for it.
# Levy's web process is controlled with signals (HUP, TERM, TTIN/TTOU); give this
# instance a socket of its own with GUNICORN_CONTROL_SOCKET to use gunicornc.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True


# Prometheus multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set, every worker writes
# its metrics to files there and /metrics adds them all up (docs/operations.md,
# "Monitoring"). The directory belongs to this gunicorn alone.
def on_starting(server: Any) -> None:
    """Start from empty: files left by a previous run would be counted again."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server: Any, worker: Any) -> None:
    """Forget a finished worker's memory gauge; its counters stay in the totals."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# gunicorn answers a request it cannot parse (a request line over 4094 bytes: 414, too
# many or too large headers: 431, a malformed request: 400) itself, before Django sees
# it, with an HTML page. Levy's clients expect its JSON error shape (docs/api.md,
# decision 0018): replace the page. gunicorn has no hook for this; its workers call
# gunicorn.util.write_error, which this file replaces in the master before they fork.
def _json_error_response(status_int: int, reason: str) -> bytes:
    import json

    codes = {
        400: "bad_request",
        403: "permission_denied",
        413: "request_too_large",
        414: "request_line_too_long",
        417: "expectation_failed",
        431: "request_headers_too_large",
        500: "server_error",
        501: "not_implemented",
    }
    messages = {
        414: "The request line (method and URL) is longer than this server accepts.",
        431: "The request headers are larger than this server accepts.",
    }
    body = json.dumps(
        {
            "error": {
                "code": codes.get(status_int, "bad_request"),
                "message": messages.get(status_int, f"The request could not be read: {reason}."),
                "details": {},
            }
        }
    )
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode("latin1")


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    from gunicorn import util

    util.write_nonblock(sock, _json_error_response(status_int, reason))


def _install_json_errors() -> None:
    from gunicorn import util

    util.write_error = _write_json_error


_install_json_errors()
