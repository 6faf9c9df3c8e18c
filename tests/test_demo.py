"""The demo path, end to end on SQLite, so its zero-setup default cannot rot.

``make demo`` migrates a SQLite file and runs ``seed_demo``. This does the same in
subprocesses (the test process itself stays on PostgreSQL and needs no database):
migrate, seed twice, then read the file back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESTATE = "Palm Grove Estate"
ALL_STATUSES = {"cancelled", "paid", "waived", "disputed", "overdue", "acknowledged", "pending"}
TABLES = (
    "accounts_user",
    "estates_cluster",
    "estates_membership",
    "billing_bill",
    "billing_billschedule",
    "billing_billacknowledgement",
    "billing_billdispute",
    "wallets_wallet",
    "wallets_transaction",
    "notifications_notification",
    "audit_auditevent",
)

# Each member's status per bill, both ways: in SQL (bill_member_statuses) and in
# Python (Bill.status_for); and each wallet's balance against its ledger.
STATUS_SCRIPT = f"""
import json
from collections import Counter
from levy.billing.models import Bill
from levy.billing.selectors import bill_member_statuses
from levy.wallets.models import Wallet
from levy.wallets.selectors import ledger_balance

bills = Bill.objects.filter(cluster__name={ESTATE!r}).select_related("cluster")
statuses, mismatches = Counter(), []
for bill in bills:
    for member in bill_member_statuses(bill=bill):
        python_status = bill.status_for(member.user).value
        statuses[python_status] += 1
        if python_status != member.status:
            mismatches.append([bill.reference, member.user.email, python_status, member.status])
unbalanced = [str(w.pk) for w in Wallet.objects.filter(cluster__name={ESTATE!r}) if w.balance != ledger_balance(w)]
# What the New bill and New schedule pages say an estate-wide bill applies to.
from levy.billing.selectors import billable_member_count
from levy.estates.models import Cluster
audience = billable_member_count(Cluster.objects.get(name={ESTATE!r}))
result = {{"statuses": statuses, "mismatches": mismatches, "unbalanced": unbalanced, "audience": audience}}
print("RESULT " + json.dumps(result))
"""


def manage(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{name: value for name, value in os.environ.items() if name != "LEVY_DEMO_ADDR"},
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # As scripts/demo.sh runs it: tasks in-process, whatever REDIS_URL says.
        "CELERY_TASK_ALWAYS_EAGER": "1",
        # A naive datetime reaching a DateTimeField is a RuntimeWarning: fail on it.
        "PYTHONWARNINGS": "error::RuntimeWarning",
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def row_counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}  # noqa: S608


def test_demo_migrates_and_seeds_on_sqlite_idempotently(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.sqlite3"
    db_url = f"sqlite:///{db_path}"

    manage(db_url, "migrate", "--noinput", "-v", "0")
    first = manage(db_url, "seed_demo")
    assert "http://127.0.0.1:8000/admin/" in first.stdout
    assert "levy-demo-2026" in first.stdout
    assert "operator@levy.test" in first.stdout
    after_first = row_counts(db_path)

    second = manage(db_url, "seed_demo")
    assert "already exists" in second.stdout
    assert "operator@levy.test" in second.stdout
    assert row_counts(db_path) == after_first, "a second seed_demo run wrote rows"

    with sqlite3.connect(db_path) as conn:
        clusters = conn.execute("SELECT id, currency FROM estates_cluster WHERE name = ?", [ESTATE]).fetchall()
        assert len(clusters) == 1
        cluster_id, currency = clusters[0]
        assert currency == "NGN"
        roles = dict(
            conn.execute(
                "SELECT role, COUNT(*) FROM estates_membership WHERE cluster_id = ? AND active GROUP BY role",
                [cluster_id],
            ).fetchall()
        )
        residents = conn.execute(
            "SELECT COUNT(*) FROM estates_membership WHERE cluster_id = ? AND is_resident", [cluster_id]
        ).fetchone()[0]
        wallets = conn.execute("SELECT COUNT(*) FROM wallets_wallet WHERE cluster_id = ?", [cluster_id]).fetchone()[0]
        operators = conn.execute(
            "SELECT email FROM accounts_user WHERE is_superuser AND is_staff AND is_active"
        ).fetchall()
        failed = conn.execute(
            "SELECT COUNT(*) FROM wallets_transaction WHERE status = 'failed' AND cluster_id = ?", [cluster_id]
        ).fetchone()[0]
        refunds = conn.execute(
            "SELECT COUNT(*) FROM wallets_transaction WHERE type = 'refund' AND cluster_id = ?", [cluster_id]
        ).fetchone()[0]
        stuck = conn.execute(
            "SELECT event, last_error FROM notifications_notificationintent"
            " WHERE delivered_at IS NULL OR last_error != ''"
        ).fetchall()
        intents = conn.execute("SELECT COUNT(*) FROM notifications_notificationintent").fetchone()[0]
        schedules = conn.execute(
            "SELECT title, frequency, paused_at IS NOT NULL, user_id IS NULL, next_issue_on > date('now')"
            " FROM billing_billschedule WHERE cluster_id = ? ORDER BY title",
            [cluster_id],
        ).fetchall()
        scheduled_bills = conn.execute("SELECT COUNT(*) FROM billing_bill WHERE schedule_id IS NOT NULL").fetchone()[0]
        late_fee_rules = conn.execute(
            "SELECT title, late_fee_kind, late_fee_value, late_fee_grace_days FROM billing_bill"
            " WHERE cluster_id = ? AND late_fee_kind != ''",
            [cluster_id],
        ).fetchall()
    # Every notification the seed raised reached its inbox on SQLite too (the batch's
    # PostgreSQL-only statement once failed here and left them undelivered).
    assert intents > 0
    assert stuck == []
    assert roles == {"admin": 1, "treasurer": 1, "auditor": 1, "resident": 12}
    assert residents == 12  # staff roles do not live in the estate by default
    assert wallets == 15
    assert operators == [("operator@levy.test",)]
    assert failed >= 1
    assert refunds >= 1
    # Recurring bills whose first bills are weeks away (the demo runs no scheduler), one
    # of them a resident's, paused; a late-fee rule on the service charge.
    assert schedules == [("Parking bay rental", "yearly", 1, 0, 1), ("Service charge", "monthly", 0, 1, 1)]
    assert scheduled_bills == 0
    assert [(kind, str(value), grace) for _title, kind, value, grace in late_fee_rules] == [("percent", "2.5", 7)]

    shell = manage(db_url, "shell", "--no-imports", "-c", STATUS_SCRIPT)
    line = next(line for line in shell.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["mismatches"] == [], "SQL and Python disagree on a status"
    assert result["unbalanced"] == [], "a wallet's balance differs from its ledger"
    # SQLite has no trigger keeping Cluster.billable_members: the pages' count is counted.
    assert result["audience"] == 12
    missing = ALL_STATUSES - {status for status, count in result["statuses"].items() if count > 0}
    assert not missing, f"no (bill, member) pair has status {sorted(missing)}: {result['statuses']}"
