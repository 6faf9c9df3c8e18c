"""CPU per request of the web side, measured in-process as process CPU time.

Calls Django's WSGI application directly — the same application object gunicorn
calls, with production settings (``DJANGO_ENV=production``, as ``make bench`` runs
it), the whole middleware stack, a JWT, rate limits counted in Redis — for
``--requests`` requests of one operation, each on a different (resident, bill), and
prints per request:

- ``python``: this thread's CPU time (``time.thread_time``: Django, DRF, the
  database driver's client side, the Redis client);
- ``pg``: the CPU time of this process's PostgreSQL session (psutil on its backend);
- ``queries``: statements per request (Django's ``connection.queries`` is off in
  production; counted with an ``execute_wrapper``).

The after-commit hand-off of the notification is part of the request (as in
gunicorn): with a broker it is a Redis round trip. Tasks are not run here.

    DATABASE_URL=postgres://…/scratch REDIS_URL=redis://127.0.0.1:6379/15 \\
        .venv/bin/python scripts/request_cpu.py --operation pay --requests 300 --runs 3
    … --profile /tmp/pay.prof   # and cProfile one more run of the same size

It writes an estate into that database (a scratch one: run ``manage.py migrate`` on
it first); ``CELERY_BROKER_URL`` should name a Redis database nothing consumes (the
receipts' tasks are left in it), e.g. ``redis://127.0.0.1:6379/15``.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operation", choices=["pay", "acknowledge"], default="pay")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--profile", help="write a cProfile of one more run to this file")
    parser.add_argument(
        "--ab",
        choices=["membership-prefetch", "notify-batch"],
        help="alternate blocks of --block requests without and with one change (the runs "
        "become rounds): both see the same load, which a busy machine makes vary a lot",
    )
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_ENV": "production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "LEVY_PROVIDER_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LEVY_SERVER_TIMING": "1",
            "LEVY_RATE_LIMITS_ENABLED": "1",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            # one PostgreSQL session for the whole measurement: a session that ends
            # takes its CPU time with it
            "DB_CONN_MAX_AGE": "36000",
        }
    )
    for scope in ("USER", "ESTATE", "SIGN_IN", "ACKNOWLEDGE", "DISPUTE", "PAY", "CREDIT", "BILL_CREATE"):
        os.environ[f"LEVY_RATE_{scope}"] = "100000000/min"
    os.environ.pop("DJANGO_DEBUG", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from rest_framework_simplejwt.tokens import AccessToken

    from levy.billing.services import bill_acknowledge, bill_create_user_specific
    from levy.estates.models import Cluster
    from levy.estates.permissions import Role
    from levy.wallets.services import wallet_credit
    from tests.conftest import access, bill_input
    from tests.factories import MembershipFactory, UserFactory

    per_run = 2 * args.block if args.ab else args.requests
    total = args.warmup + per_run * args.runs + (args.requests if args.profile else 0)
    residents_count = 50
    per_resident = -(-total // residents_count)
    tag = uuid.uuid4().hex[:8]
    cluster = Cluster.objects.create(name=f"Request CPU {tag}", currency="NGN")

    def member(n: int, role: str = Role.RESIDENT) -> Any:
        return MembershipFactory(cluster=cluster, role=role, user=UserFactory(email=f"req-{tag}-{n}@example.test"))

    admin, treasurer = member(-1, Role.ADMIN), member(-2, Role.TREASURER)
    residents = [member(n) for n in range(residents_count)]
    print(f"preparing {per_resident * residents_count} bills ...", flush=True)
    pairs: list[tuple[Any, Any]] = []
    for round_ in range(per_resident):
        for resident in residents:
            bill = bill_create_user_specific(
                access=access(admin), user_id=resident.user_id, data=bill_input(title=f"Bill {round_}")
            )
            if args.operation == "pay":
                bill_acknowledge(access=access(resident), bill=bill)
            pairs.append((resident, bill))
    if args.operation == "pay":
        from decimal import Decimal

        for resident in residents:
            wallet_credit(
                access=access(treasurer),
                membership=resident,
                amount=Decimal("15000.00") * per_resident,
                note="cash",
                idempotency_key=f"fund-{tag}-{resident.pk}",
            )
    tokens = {r.user_id: str(AccessToken.for_user(r.user)) for r in residents}
    application = get_wsgi_application()
    statements = [0]

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[0] += 1
        return execute(sql, params, many, context)

    def call(resident: Any, bill: Any) -> None:
        path = f"/api/v1/clusters/{cluster.pk}/bills/{bill.pk}/{args.operation}/"
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8300",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8300",
            "HTTP_X_FORWARDED_PROTO": "https",
            "HTTP_AUTHORIZATION": f"Bearer {tokens[resident.user_id]}",
            "HTTP_ACCEPT": "application/json",
            "HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": "0",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        body = b"".join(application(environ, lambda s, h, exc_info=None: status.append(s)))
        expected = "201" if args.operation == "pay" else "200"
        if not status[0].startswith(expected):
            raise SystemExit(f"{path}: {status[0]} {body[:300]!r}")

    queue = iter(pairs)
    for _ in range(args.warmup):
        call(*next(queue))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])

    def backend_cpu() -> float:
        times = backend.cpu_times()
        return times.user + times.system

    def block(size: int) -> tuple[float, float, int]:
        """``size`` requests: (this thread's CPU seconds, the session's, statements)."""
        statements[0] = 0
        with connection.execute_wrapper(count):
            python, pg = time.thread_time(), backend_cpu()
            for _ in range(size):
                call(*next(queue))
            return time.thread_time() - python, backend_cpu() - pg, statements[0]

    if args.ab:
        return alternate(args, block)
    print(f"{'run':>4} {'python':>8} {'pg':>8} {'queries':>8}  (CPU ms per {args.operation} request)")
    rows = []
    for run in range(args.runs):
        python, pg, made = block(args.requests)
        row = (1000 * python / args.requests, 1000 * pg / args.requests, made / args.requests)
        rows.append(row)
        print(f"{run + 1:>4} {row[0]:>8.3f} {row[1]:>8.3f} {row[2]:>8.1f}")
    mean = [sum(col) / len(col) for col in zip(*rows, strict=True)]
    print(f"mean {mean[0]:>8.3f} {mean[1]:>8.3f} {mean[2]:>8.1f}")
    if args.profile:
        profiler = cProfile.Profile(time.thread_time)  # CPU time, not the waits on the servers
        profiler.enable()
        for _ in range(args.requests):
            call(*next(queue))
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"profile of {args.requests} more requests: {args.profile}")
    print(json.dumps({"operation": args.operation, "python_ms": mean[0], "pg_ms": mean[1], "queries": mean[2]}))
    return 0


def switch(change: str, on: bool) -> None:
    """Turn one change off (the code before it) or on, in this process."""
    from django.conf import settings

    if change == "notify-batch":
        settings.LEVY_NOTIFY_BATCH = on
        return
    # membership-prefetch: simplejwt's own authenticate leaves cluster_id unset, so the
    # user is read alone and access_cluster reads the membership (the code before).
    from rest_framework_simplejwt.authentication import JWTAuthentication

    from levy.api.authentication import LevyJWTAuthentication

    if not hasattr(LevyJWTAuthentication, "_with_prefetch"):
        LevyJWTAuthentication._with_prefetch = LevyJWTAuthentication.authenticate  # type: ignore[attr-defined]
    LevyJWTAuthentication.authenticate = (  # type: ignore[method-assign]
        LevyJWTAuthentication._with_prefetch if on else JWTAuthentication.authenticate  # type: ignore[attr-defined]
    )


def alternate(args: Any, block: Any) -> int:
    sums = {False: [0.0, 0.0, 0], True: [0.0, 0.0, 0]}
    ratios = []
    print(
        f"{'round':>5} {'off py':>8} {'off pg':>8} {'on py':>8} {'on pg':>8}  (CPU ms per {args.operation}; {args.ab})"
    )
    for round_ in range(args.runs):
        row = []
        for on in (False, True):
            switch(args.ab, on)
            python, pg, made = block(args.block)
            sums[on][0] += python
            sums[on][1] += pg
            sums[on][2] += made
            row += [1000 * python / args.block, 1000 * pg / args.block]
        ratios.append((row[2] + row[3]) / (row[0] + row[1]))
        print(f"{round_ + 1:>5} " + " ".join(f"{v:>8.3f}" for v in row))
    n = args.block * args.runs
    result = {
        state: {"python_ms": 1000 * v[0] / n, "pg_ms": 1000 * v[1] / n, "queries": v[2] / n}
        for state, v in (("off", sums[False]), ("on", sums[True]))
    }
    ratios.sort()
    result["median_ratio_on_to_off"] = ratios[len(ratios) // 2]  # type: ignore[assignment]
    print(json.dumps({"operation": args.operation, "change": args.ab, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
