#!/usr/bin/env python3
"""The CSV exports at scale, over real HTTP against gunicorn as deployed.

1. recreates a work database from a data set template (``manage.py generate_dataset``
   builds the template first if it is missing: data set L, ~25 minutes on 2 cores),
   migrates it and runs ANALYZE;
2. starts gunicorn as deployed (``DJANGO_ENV=production``, ``config/gunicorn.conf.py``,
   its sync worker and 30 s timeout) with ONE worker, so every export runs in the
   process whose memory is sampled;
3. downloads each export of the measured estate's admin — the members with their bill
   summaries, one estate-wide bill's members, the deposits, the bills — reading the
   body as it streams: time to the first byte, total time, rows, and the worker's RSS
   sampled every 10 ms (before, peak, and its spread once the first rows have left);
4. checks each file is complete (the row count the database gives for the same
   filter) and that the worker survived (same pid: not killed by the timeout);
5. prints a table and writes ``results/export-bench.json``.

Usage (PostgreSQL and Redis running; see docs/performance.md, "CSV exports")::

    .venv/bin/python scripts/export_bench.py [--template levy_bench_L] [--port 8470]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.bench import (  # noqa: E402 - after the project root is on the path
    PYTHON,
    Config,
    admin_connection,
    database_exists,
    download,
    manage,
    start_gunicorn,
    stop_all,
    worker_pid,
)

ADMIN_EMAIL = "admin@estate0.bench.levy.test"


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    path: str
    expected_rows: int


def config_from(args: argparse.Namespace) -> Config:
    return Config(
        size="L",
        quick=False,
        clients=1,
        workers=1,
        requests=0,
        warmup=0,
        payments=0,
        payment_clients=0,
        rss_requests=0,
        port=args.port,
        postgres=args.postgres.rstrip("/"),
        redis=args.redis.rstrip("/"),
        cache_db=args.redis_db,
        broker_db=args.redis_db,
        database=args.database,
        template=args.template,
        results=args.results.resolve(),
    )


def prepare(config: Config, logs: Path) -> None:
    """The work database, as a copy of the template (built first if missing)."""
    if not database_exists(config, config.template):
        print(f"==> building template {config.template} (data set L; log in {logs / 'dataset.log'})", flush=True)
        with admin_connection(config) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config.database)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config.database)))
        manage(config, "migrate", "--noinput", log=logs / "migrate.log")
        manage(config, "generate_dataset", "--size", "L", "--template", config.template, log=logs / "dataset.log")
    with admin_connection(config) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config.database)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(config.database), sql.Identifier(config.template)
            )
        )
    manage(config, "migrate", "--noinput", log=logs / "migrate.log")
    with psycopg.connect(config.database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    if not (config.results / ".bench-static" / "staticfiles.json").exists():
        manage(config, "collectstatic", "--noinput", "-v", "0", log=logs / "collectstatic.log", production=True)


def targets_and_token(config: Config) -> tuple[list[Target], str]:
    """The exports to measure, each with the row count the database gives for it."""
    os.environ.update(config.app_env())
    os.environ.update({"DJANGO_ENV": "development", "DJANGO_DEBUG": "0", "JWT_ACCESS_MINUTES": "600"})
    import django

    django.setup()
    from rest_framework_simplejwt.tokens import AccessToken

    from levy.billing.models import Bill
    from levy.billing.selectors import bill_audience
    from levy.estates.models import Membership
    from levy.wallets.models import Transaction

    admin = Membership.objects.select_related("cluster", "user").get(user__email=ADMIN_EMAIL)
    cluster = admin.cluster
    m = f"/api/v1/clusters/{cluster.pk}/management"
    bill = Bill.objects.filter(cluster=cluster, user__isnull=True).order_by("created_at", "id").first()
    assert bill is not None
    targets = [
        Target(
            "members",
            "members with bill summaries",
            f"{m}/members/export.csv",
            Membership.objects.filter(cluster=cluster).count(),
        ),
        Target(
            "bill_members",
            f"one estate-wide bill's members ({bill.reference})",
            f"{m}/bills/{bill.pk}/members/export.csv",
            bill_audience(bill).count(),
        ),
        Target(
            "deposits",
            "transactions, ?type=deposit",
            f"{m}/transactions/export.csv?type=deposit",
            Transaction.objects.filter(cluster=cluster, type="deposit").count(),
        ),
        Target(
            "bills", "bills with their counts", f"{m}/bills/export.csv", Bill.objects.filter(cluster=cluster).count()
        ),
    ]
    return targets, str(AccessToken.for_user(admin.user))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgres://root@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server URL")
    parser.add_argument("--redis-db", type=int, default=12, help="Redis database for the cache (not emptied)")
    parser.add_argument("--template", default="levy_bench_L", help="the data set's template database")
    parser.add_argument("--database", default="levy_bench_export", help="the work database (recreated)")
    parser.add_argument("--port", type=int, default=8470)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument(
        "--reuse-database", action="store_true", help="measure the work database as it is (no copy, no migrate)"
    )
    args = parser.parse_args(argv)
    config = config_from(args)
    logs = config.results / "export-bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"==> work database {config.database} from {config.template}", flush=True)
    if not args.reuse_database:
        prepare(config, logs)
    targets, token = targets_and_token(config)
    print(f"==> gunicorn with one worker on port {config.port}", flush=True)
    try:
        web = start_gunicorn(config, name="gunicorn", port=config.port, workers=1, logs=logs)
        worker = worker_pid(web.pid)
        # Warm the worker: the first request of a process imports and connects.
        download(config.port, targets[-1].path, token, worker)
        results: dict[str, Any] = {}
        for target in targets:
            outcome = download(config.port, target.path, token, worker)
            outcome["expected_rows"] = target.expected_rows
            time.sleep(1)  # a killed worker is replaced within a second
            outcome["same_worker"] = worker_pid(web.pid) == worker
            if not outcome["same_worker"]:
                worker = worker_pid(web.pid)
                download(config.port, targets[-1].path, token, worker)  # warm the new worker
            results[target.key] = {"label": target.label, **outcome}
            print(
                f"{target.label:48} {outcome['rows']:>7,} rows ({target.expected_rows:,} expected) "
                f"first byte {outcome['first_byte_ms']:7.1f} ms  total {outcome['total_s']:6.2f} s  "
                f"RSS {outcome['rss_before_mb']:.1f} -> peak {outcome['rss_peak_mb']:.1f} MB "
                f"(+{outcome['rss_peak_growth_mb']:.1f}; steady spread {outcome['rss_steady_spread_mb']:.1f})  "
                f"{'complete' if outcome['complete'] and outcome['rows'] == target.expected_rows else 'INCOMPLETE'}"
                f"{'' if outcome['same_worker'] else ', WORKER REPLACED'}",
                flush=True,
            )
    finally:
        stop_all()
    out = config.results / "export-bench.json"
    out.write_text(json.dumps({"template": config.template, "python": PYTHON, "exports": results}, indent=2))
    print(f"==> {out}")
    ok = all(r["complete"] and r["rows"] == r["expected_rows"] and r["same_worker"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
