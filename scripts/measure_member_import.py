"""Measure a members CSV import as production runs it: a real Celery worker process
imports a generated file into a generated estate; this script uploads it through the
service the API calls, follows the job's status, and reads the worker's peak memory.

    DATABASE_URL=postgres://…/<scratch db> REDIS_URL=redis://127.0.0.1:6379/<db> \\
        .venv/bin/python scripts/measure_member_import.py [--rows 50000] [--existing 1000]

The database is migrated, then gets one more estate (an admin and ``--existing``
members); the file has ``--rows`` lines, ``--existing`` of them already members (they
are skipped). The worker is ``celery -A config worker --pool solo -Q levy``: the task
runs in the worker's own process, whose peak resident memory (VmHWM) is read from
/proc before the upload and after the import. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def wait_for_worker(log: Path, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{log.read_text()[-3000:]}")
        if "ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"worker not ready:\n{log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--existing", type=int, default=1_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a PostgreSQL scratch database")
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL must name a Redis database of your own (the broker of this run)")
    os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from levy.accounts.models import User
    from levy.estates.access import access_cluster
    from levy.estates.models import Cluster, MemberImport, Membership
    from levy.estates.permissions import Role
    from levy.members.imports import member_import_start
    from levy.wallets.models import Wallet

    run = uuid.uuid4().hex[:8]
    cluster = Cluster.objects.create(name=f"Import measurement {run}")
    admin = User.objects.create_user(f"admin-{run}@measure.levy.test", name="Measure Admin")
    Membership.objects.create(cluster=cluster, user=admin, role=Role.ADMIN, is_resident=False)
    Wallet.objects.create(cluster=cluster, user=admin)
    existing = User.objects.bulk_create(
        [User(email=f"existing-{run}-{i}@measure.levy.test", name=f"Existing {i}") for i in range(args.existing)]
    )
    Membership.objects.bulk_create([Membership(cluster=cluster, user=u) for u in existing])
    Wallet.objects.bulk_create([Wallet(cluster=cluster, user=u) for u in existing])

    lines = ["email,name,role,is_resident"]
    lines += [f"{u.email},{u.name},resident,true" for u in existing[: min(args.existing, args.rows)]]
    for i in range(args.rows - len(lines) + 1):
        lines.append(f"resident-{run}-{i}@measure.levy.test,Resident {i} Okafor,resident,true")
    content = ("\n".join(lines) + "\n").encode()

    log = Path(f"/tmp/levy-measure-import-{run}.log")  # noqa: S108 - a log of this run, named by its id
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", "levy", "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_worker(log, worker)
        idle_peak = vm_kib(worker.pid, "VmHWM")
        uploaded = time.monotonic()
        job = member_import_start(access=access_cluster(admin, cluster.pk), file_name="members.csv", content=content)
        upload_seconds = time.monotonic() - uploaded
        statuses: list[tuple[float, str, int]] = []
        while True:
            current = MemberImport.objects.get(pk=job.pk)
            if not statuses or statuses[-1][1:] != (current.status, current.processed_lines):
                statuses.append((round(time.monotonic() - uploaded, 2), current.status, current.processed_lines))
            if current.status in (MemberImport.Status.SUCCEEDED, MemberImport.Status.FAILED):
                break
            if worker.poll() is not None:
                raise RuntimeError(f"worker died:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        end_to_end = time.monotonic() - uploaded
        peak = vm_kib(worker.pid, "VmHWM")
        assert current.started_at is not None
        assert current.finished_at is not None
        members = Membership.objects.filter(cluster=cluster, active=True).count()
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "file_bytes": len(content),
                    "status": current.status,
                    "created": current.created_count,
                    "skipped": current.skipped_count,
                    "active_members_after": members,
                    "upload_request_seconds": round(upload_seconds, 3),
                    "job_seconds": round((current.finished_at - current.started_at).total_seconds(), 2),
                    "upload_to_done_seconds": round(end_to_end, 2),
                    "worker_peak_rss_mib_before": round(idle_peak / 1024, 1),
                    "worker_peak_rss_mib_after": round(peak / 1024, 1),
                    "progress": statuses,
                },
                indent=2,
            )
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)


if __name__ == "__main__":
    main()
