"""Time the late fees of one estate-wide bill at a given estate size (docs/performance.md).

Builds, with set-based SQL, an estate of ``--members`` residents (1% of them with an open
dispute on the bill), issues one estate-wide bill with a fixed late fee through the
billing service, then times, in this process:

1. ``late_fees_issue_due`` the day after the grace period (the INSERT … SELECT of every
   fee and its counter rows, the audit event and the one outbox intent), and
2. the fan-out of that intent to every fee holder's inbox (``intent_deliver``, as the
   worker runs it; without e-mail channels, so only the inbox rows are measured).

It writes to the database of DATABASE_URL, which must be a development database (its
name must not be ``levy``); the estate it builds stays there.

    DATABASE_URL=postgres://root@127.0.0.1:5432/levy_dev .venv/bin/python scripts/bench_late_fees.py --members 50000
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["LEVY_NOTIFICATION_CHANNELS"] = ""  # the inbox fan-out only
# The intent is handed to an in-memory broker and fanned out below, timed on its own.
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
os.environ["CELERY_BROKER_URL"] = "memory://"

from scripts.bench import fan_out_late_fees, late_fee_bill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50_000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    from levy.accounts.models import User
    from levy.billing.late_fees import late_fees_issue_due
    from levy.billing.models import Bill
    from levy.billing.selectors import estate_today
    from levy.estates.models import Cluster, Membership

    if connection.settings_dict["NAME"] == "levy" or connection.vendor != "postgresql":
        raise SystemExit("use a PostgreSQL development database, not 'levy'")

    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    cluster = Cluster.objects.create(name=f"Late-fee bench {tag}", currency="NGN")
    admin = User.objects.create_user(email=f"admin-{tag}@bench.levy.test", name="Bench admin", password=None)
    Membership.objects.create(cluster=cluster, user=admin, role="admin", is_resident=False)
    joined = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (id, password, is_superuser, email, name, is_active, is_staff, date_joined) "
            "SELECT md5(%(tag)s || ':u:' || k)::uuid, '!', false, 'resident' || k || '-' || %(tag)s || "
            "'@bench.levy.test', 'Resident ' || k, true, false, %(joined)s FROM generate_series(1, %(n)s) k",
            {"tag": tag, "joined": joined, "n": args.members},
        )
        cursor.execute(
            "INSERT INTO estates_membership (id, role, is_resident, joined_at, active, cluster_id, user_id) "
            "SELECT md5(%(tag)s || ':m:' || k)::uuid, 'resident', true, %(joined)s, true, %(cluster)s, "
            "md5(%(tag)s || ':u:' || k)::uuid FROM generate_series(1, %(n)s) k",
            {"tag": tag, "joined": joined, "n": args.members, "cluster": cluster.pk},
        )
        cursor.execute("ANALYZE accounts_user; ANALYZE estates_membership")
    built = time.perf_counter()
    print(f"estate of {args.members:,} residents built in {built - started:.1f} s")

    due = estate_today() + datetime.timedelta(days=1)
    bill = late_fee_bill(admin, cluster.pk, due, "Service charge")
    disputers = args.members // 100
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_billdispute (id, cluster_id, bill_id, user_id, reason, status, created_at, "
            "resolution_note) SELECT md5(%(tag)s || ':d:' || k)::uuid, %(cluster)s, %(bill)s, "
            "md5(%(tag)s || ':u:' || k)::uuid, 'bench', 'open', now(), '' FROM generate_series(1, %(n)s) k",
            {"tag": tag, "cluster": cluster.pk, "bill": bill.pk, "n": disputers},
        )

    day = due + datetime.timedelta(days=4)
    spent: dict[str, float] = {}

    def timed(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if sql.startswith("WITH fees"):
                spent["insert"] = time.perf_counter() - started

    t0 = time.perf_counter()
    with connection.execute_wrapper(timed):
        result = late_fees_issue_due(day)
    issued_in = time.perf_counter() - t0
    fees = Bill.objects.filter(late_fee_of=bill).count()
    print(f"late_fees_issue_due: {result} in {issued_in:.2f} s ({fees:,} late-fee bills of {bill.reference})")
    print(
        f"  of which the INSERT … SELECT of the fees and their counters (foreign keys checked): "
        f"{spent['insert']:.2f} s; the rest is the run lock, the mark on the bill, the audit and "
        "intent rows and the COMMIT"
    )

    fanned = fan_out_late_fees(bill)
    print(
        f"fan-out of the one intent: {fanned['fanout_written']:,} inbox rows written in {fanned['fanout_s']:.2f} s"
        f" ({fanned['fanout_inbox']:,} in the inbox)"
    )


if __name__ == "__main__":
    main()
