"""Build the benchmark data sets S and L (docs: targets.md, "Data sets") with set-based SQL.

Everything is derived from the seed through md5 hashes of (seed, kind, ids), so the same
seed gives the same rows (timestamps are anchored on today's date in the estate calendar).
Per (bill, member) pair one uniform value ``u`` decides the facts: ``u < 0.60`` paid,
``u < 0.70`` acknowledged, ``0.60 <= u < 0.61`` an open dispute — so paid ⊂ acknowledged
and disputes never sit on paid pairs.

PostgreSQL only. Usage::

    manage.py generate_dataset --size S [--seed 42] [--template levy_bench_S [--from-template]]
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from psycopg import sql
from psycopg.conninfo import make_conninfo

from levy.billing.counters import recount
from levy.billing.models import Bill

SIZES: dict[str, dict[str, int]] = {
    "S": {"members": 5_000, "wide_bills": 100},
    "L": {"members": 50_000, "wide_bills": 200},
}

BENCH_PASSWORD = "levy-bench-password"  # noqa: S105 - a benchmark fixture, never a real account

TABLES = [
    "accounts_user",
    "estates_cluster",
    "estates_membership",
    "billing_bill",
    "billing_billacknowledgement",
    "billing_billdispute",
    "billing_billcounter",
    "wallets_wallet",
    "wallets_transaction",
]

TEMP_TABLES = ["gen_pay", "gen_wallet", "gen_pair", "gen_bill", "gen_member", "gen_cluster", "gen_param"]

# (label, SQL). Parameters: seed, tz, members, wide, other_estates, other_size, other_wide, password.
STEPS: list[tuple[str, str]] = [
    (
        "parameters",
        """
        CREATE TEMP TABLE gen_param AS
        SELECT %(seed)s::text AS seed,
               (date_trunc('day', now() AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s) AS anchor,
               %(tz)s::text AS tz
        """,
    ),
    (
        "hash function",
        """
        CREATE FUNCTION pg_temp.levy_u(key text, part int) RETURNS float8
        LANGUAGE sql IMMUTABLE AS
        $$ SELECT ('x' || substr(md5(key), 1 + 8 * part, 8))::bit(32)::bigint / 4294967296.0 $$
        """,
    ),
    (
        "plan estates",
        """
        CREATE TEMP TABLE gen_cluster AS
        SELECT c.idx,
               md5(p.seed || ':c:' || c.idx)::uuid AS id,
               CASE WHEN c.idx = 0 THEN %(members)s::int ELSE %(other_size)s::int END AS n_res,
               CASE WHEN c.idx = 0 THEN %(wide)s::int ELSE %(other_wide)s::int END AS n_wide,
               CASE WHEN c.idx = 0 THEN %(members)s::int / 10 ELSE %(other_size)s::int / 10 END AS n_spec
        FROM gen_param p, generate_series(0, %(other_estates)s::int) AS c(idx)
        """,
    ),
    (
        "estates_cluster",
        """
        INSERT INTO estates_cluster (id, name, currency, bill_sequence, created_at, billable_members)
        SELECT c.id,
               CASE WHEN c.idx = 0 THEN 'Measured estate' ELSE 'Bench estate ' || lpad(c.idx::text, 2, '0') END,
               'NGN', c.n_wide + c.n_spec, p.anchor - interval '420 days',
               0  -- the membership triggers count them in as they are inserted
        FROM gen_cluster c, gen_param p
        """,
    ),
    (
        "plan members",
        """
        CREATE TEMP TABLE gen_member AS
        SELECT c.idx AS cidx, c.id AS cluster_id, k,
               md5(p.seed || ':u:' || c.idx || ':' || k)::uuid AS user_id,
               md5(p.seed || ':m:' || c.idx || ':' || k)::uuid AS membership_id,
               md5(p.seed || ':w:' || c.idx || ':' || k)::uuid AS wallet_id,
               CASE k WHEN -3 THEN 'admin' WHEN -2 THEN 'treasurer' WHEN -1 THEN 'auditor' ELSE 'resident' END
                   AS role,
               p.anchor - interval '400 days'
                   + interval '1 minute' * floor(pg_temp.levy_u(p.seed || ':j:' || c.idx || ':' || k, 0) * 43200)
                   AS joined_at
        FROM gen_param p, gen_cluster c, generate_series(-3, c.n_res) AS k
        WHERE k <> 0
        """,
    ),
    ("index members", "CREATE INDEX ON gen_member (cidx, k)"),
    ("analyze members", "ANALYZE gen_member"),
    (
        "accounts_user",
        """
        INSERT INTO accounts_user (id, password, last_login, is_superuser, email, name, is_active, is_staff,
                                   date_joined)
        SELECT m.user_id, %(password)s, NULL, false,
               CASE WHEN m.role = 'resident' THEN 'resident' || m.k ELSE m.role END
                   || '@estate' || m.cidx || '.bench.levy.test',
               CASE WHEN m.role = 'resident' THEN 'Resident ' || m.k ELSE initcap(m.role) END
                   || ' of estate ' || m.cidx,
               true, false, m.joined_at
        FROM gen_member m
        """,
    ),
    (
        "estates_membership",
        """
        INSERT INTO estates_membership (id, role, is_resident, joined_at, active, deactivated_at, cluster_id, user_id)
        SELECT m.membership_id, m.role, m.role = 'resident', m.joined_at, true, NULL, m.cluster_id, m.user_id
        FROM gen_member m
        """,
    ),
    (
        "plan bills",
        """
        CREATE TEMP TABLE gen_bill AS
        WITH raw AS (
            SELECT c.idx AS cidx, c.id AS cluster_id, c.n_res, c.n_wide, j,
                   md5(p.seed || ':b:' || c.idx || ':' || j) AS h,
                   p.anchor, p.tz
            FROM gen_param p, gen_cluster c, generate_series(1, c.n_wide + c.n_spec) AS j
        ), timed AS (
            SELECT r.*,
                   r.anchor - interval '300 days' + interval '250 days' * pg_temp.levy_u(r.h, 0) AS created_at,
                   CASE WHEN r.j > r.n_wide
                        THEN ((r.j - r.n_wide - 1) * 10 + floor(pg_temp.levy_u(r.h, 1) * 10)::int) %% r.n_res + 1
                   END AS target_k
            FROM raw r
        )
        SELECT t.cidx, t.cluster_id, t.h::uuid AS id, t.created_at,
               row_number() OVER (PARTITION BY t.cidx ORDER BY t.created_at, t.h)::int AS seq,
               m.user_id,
               a.user_id AS admin_id,
               ((5 + floor(pg_temp.levy_u(t.h, 2) * 40)) * 500)::numeric(14, 2) AS amount,
               (t.created_at AT TIME ZONE t.tz)::date + 14 + floor(pg_temp.levy_u(t.h, 3) * 180)::int AS due_date,
               pg_temp.levy_u(t.h || ':late', 0) < 0.3 AS allow_late,
               (ARRAY['service_charge', 'security', 'waste', 'water', 'electricity', 'maintenance', 'other'])
                   [1 + floor(pg_temp.levy_u(t.h || ':cat', 0) * 7)::int] AS category,
               t.tz
        FROM timed t
        JOIN gen_member a ON a.cidx = t.cidx AND a.k = -3
        LEFT JOIN gen_member m ON m.cidx = t.cidx AND m.k = t.target_k
        """,
    ),
    (
        "billing_bill",
        """
        INSERT INTO billing_bill (id, reference, title, description, category, amount, due_date,
                                  allow_payment_after_due, created_at, updated_at, cancelled_at,
                                  cancellation_reason, cancelled_by_id, cluster_id, created_by_id, user_id)
        SELECT b.id,
               'BILL-' || to_char(b.created_at AT TIME ZONE b.tz, 'YYYY') || '-' || lpad(b.seq::text, 6, '0'),
               initcap(replace(b.category, '_', ' ')) || ' levy ' || b.seq,
               CASE WHEN b.user_id IS NULL THEN 'Estate-wide levy' ELSE 'Levy for one member' END,
               b.category, b.amount, b.due_date, b.allow_late, b.created_at, b.created_at, NULL, '', NULL,
               b.cluster_id, b.admin_id, b.user_id
        FROM gen_bill b
        """,
    ),
    (
        "plan acknowledged pairs",
        """
        CREATE TEMP TABLE gen_pair AS
        WITH pairs AS (
            SELECT b.cluster_id, b.id AS bill_id, b.seq, b.amount, b.created_at AS bill_at,
                   m.k, m.user_id, m.wallet_id, md5(p.seed || ':p:' || b.id || ':' || m.user_id) AS h
            FROM gen_param p, gen_bill b
            JOIN gen_member m ON m.cidx = b.cidx AND m.k > 0 AND m.joined_at <= b.created_at
            WHERE b.user_id IS NULL
            UNION ALL
            SELECT b.cluster_id, b.id, b.seq, b.amount, b.created_at,
                   m.k, m.user_id, m.wallet_id, md5(p.seed || ':p:' || b.id || ':' || m.user_id)
            FROM gen_param p, gen_bill b
            JOIN gen_member m ON m.cidx = b.cidx AND m.user_id = b.user_id
        ), scored AS (
            SELECT pairs.*, pg_temp.levy_u(h, 0) AS u, pg_temp.levy_u(h, 1) AS t FROM pairs
        )
        SELECT cluster_id, bill_id, seq, amount, k, user_id, wallet_id, h, u,
               bill_at + interval '1 minute' * floor(t * 4320) AS ack_at
        FROM scored
        WHERE u < 0.70
        """,
    ),
    (
        "billing_billacknowledgement",
        """
        INSERT INTO billing_billacknowledgement (id, acknowledged_at, ip_address, user_agent, bill_id, user_id)
        SELECT md5(g.h || ':a')::uuid, g.ack_at, NULL, 'levy-bench', g.bill_id, g.user_id
        FROM gen_pair g
        """,
    ),
    (
        "billing_billdispute",
        """
        INSERT INTO billing_billdispute (id, reason, status, created_at, resolved_at, resolution_note, bill_id,
                                         cluster_id, resolved_by_id, user_id)
        SELECT md5(g.h || ':d')::uuid, 'The amount does not match what the estate agreed.', 'open',
               g.ack_at + interval '2 hours', NULL, '', g.bill_id, g.cluster_id, NULL, g.user_id
        FROM gen_pair g
        WHERE g.u >= 0.60 AND g.u < 0.61
        """,
    ),
    (
        "plan payments",
        """
        CREATE TEMP TABLE gen_pay AS
        SELECT g.cluster_id, g.wallet_id, g.bill_id, g.user_id, g.k, g.seq, g.amount, g.h,
               g.ack_at + interval '1 hour' AS paid_at
        FROM gen_pair g
        WHERE g.u < 0.60
        """,
    ),
    (
        "plan wallets",
        """
        CREATE TEMP TABLE gen_wallet AS
        SELECT m.cidx, m.cluster_id, m.k, m.user_id, m.wallet_id, m.joined_at, t.user_id AS treasurer_id,
               ((2 + floor(pg_temp.levy_u(p.seed || ':r:' || m.wallet_id, 0) * 20)) * 500)::numeric(14, 2)
                   AS remainder,
               coalesce(s.paid, 0)::numeric(14, 2) AS paid
        FROM gen_param p, gen_member m
        JOIN gen_member t ON t.cidx = m.cidx AND t.k = -2
        LEFT JOIN (SELECT wallet_id, sum(amount) AS paid FROM gen_pay GROUP BY wallet_id) s
            ON s.wallet_id = m.wallet_id
        WHERE m.k > 0
        """,
    ),
    (
        "wallets_wallet",
        """
        INSERT INTO wallets_wallet (id, balance, created_at, updated_at, cluster_id, user_id)
        SELECT w.wallet_id, w.remainder, w.joined_at, p.anchor, w.cluster_id, w.user_id
        FROM gen_wallet w, gen_param p
        """,
    ),
    (
        "wallets_transaction (deposits)",
        """
        INSERT INTO wallets_transaction (id, type, status, amount, balance_after, reference, idempotency_key,
                                         failure_reason, note, created_at, bill_id, cluster_id, initiated_by_id,
                                         payer_id, retry_of_id, reverses_id, wallet_id)
        SELECT md5(p.seed || ':dep:' || w.wallet_id)::uuid, 'deposit', 'completed',
               w.paid + w.remainder, w.paid + w.remainder,
               'TX-DEP-' || w.k, 'bench-deposit-' || w.k, '', 'Opening balance',
               w.joined_at + interval '1 day', NULL, w.cluster_id, w.treasurer_id, w.user_id, NULL, NULL,
               w.wallet_id
        FROM gen_wallet w, gen_param p
        """,
    ),
    (
        "wallets_transaction (bill payments)",
        """
        INSERT INTO wallets_transaction (id, type, status, amount, balance_after, reference, idempotency_key,
                                         failure_reason, note, created_at, bill_id, cluster_id, initiated_by_id,
                                         payer_id, retry_of_id, reverses_id, wallet_id)
        SELECT md5(g.h || ':tx')::uuid, 'bill_payment', 'completed', -g.amount,
               w.paid + w.remainder - sum(g.amount) OVER (
                   PARTITION BY g.wallet_id ORDER BY g.paid_at, g.bill_id ROWS UNBOUNDED PRECEDING),
               'TX-PAY-' || g.seq || '-' || g.k, 'bench-pay-' || g.seq || '-' || g.k, '', '',
               g.paid_at, g.bill_id, g.cluster_id, g.user_id, g.user_id, NULL, NULL, g.wallet_id
        FROM gen_pay g
        JOIN gen_wallet w ON w.wallet_id = g.wallet_id
        """,
    ),
]


class Command(BaseCommand):
    help = "Build the benchmark data set S or L (targets.md) with set-based SQL on PostgreSQL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="S")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--members", type=int, help="Resident members of the measured estate.")
        parser.add_argument("--wide-bills", type=int, help="Estate-wide bills in the measured estate.")
        parser.add_argument("--other-estates", type=int, default=20)
        parser.add_argument("--other-size", type=int, default=500, help="Residents per other estate.")
        parser.add_argument("--other-bills", type=int, default=10, help="Estate-wide bills per other estate.")
        parser.add_argument("--template", help="Save the built database as this template database.")
        parser.add_argument(
            "--from-template",
            action="store_true",
            help="If the --template database exists, recreate this database from it instead of rebuilding.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("generate_dataset needs PostgreSQL.")
        started = time.monotonic()
        template: str | None = options["template"]
        current = str(connection.settings_dict["NAME"])
        if options["from_template"]:
            if not template:
                raise CommandError("--from-template needs --template NAME.")
            if template == current:
                raise CommandError("The template must differ from the current database.")
            if self._database_exists(template):
                self._clone(source=template, target=current)
                self.stdout.write(f"recreated {current} from template {template}")
                self._report(started)
                return

        size = SIZES[options["size"]]
        members = options["members"] if options["members"] is not None else size["members"]
        wide = options["wide_bills"] if options["wide_bills"] is not None else size["wide_bills"]
        for name, value in [("members", members), ("other-size", options["other_size"])]:
            if value < 10:
                raise CommandError(f"--{name} must be at least 10.")
        params = {
            "seed": str(options["seed"]),
            "tz": str(settings.TIME_ZONE),
            "members": members,
            "wide": wide,
            "other_estates": options["other_estates"],
            "other_size": options["other_size"],
            "other_wide": options["other_bills"],
            "password": make_password(BENCH_PASSWORD),
        }
        self.stdout.write(
            f"building data set {options['size']} (seed {options['seed']}): {members} members, {wide} estate-wide"
            f" bills, {options['other_estates']} other estates x {options['other_size']}"
        )
        if template and template == current:
            raise CommandError("The template must differ from the current database.")
        # Each step's line starts with [done/total], which the benchmark reads to show its
        # progress bar: the SQL steps, the counters, VACUUM ANALYZE (twice outside a
        # transaction), and the template copy.
        analyzes = 0 if connection.in_atomic_block else 2
        self._steps = itertools.count(1)
        self._total_steps = len(STEPS) + 1 + analyzes + (1 if template else 0)
        self._build(params, started)
        if template:
            step_started = time.monotonic()
            self._clone(source=current, target=template)
            self._step(f"saved template {template}", "", step_started, started)
        self._report(started)
        self.stdout.write(
            f"sign in as admin@estate0.bench.levy.test or resident1@estate0.bench.levy.test, password {BENCH_PASSWORD}"
        )

    def _build(self, params: dict[str, Any], started: float) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM estates_cluster)")
            row = cursor.fetchone()
            if row and row[0]:
                raise CommandError("The database already holds estates: build data sets on a fresh database.")
            # Check the deferred composite keys statement by statement, not at commit.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table in TEMP_TABLES:
                cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(table)))
            cursor.execute("DROP FUNCTION IF EXISTS pg_temp.levy_u(text, int)")
            for label, statement in STEPS:
                step_started = time.monotonic()
                cursor.execute(statement, params)
                rows = cursor.rowcount
                self._step(label, f"{rows:>10,} rows" if rows >= 0 else "", step_started, started)
            for table in TEMP_TABLES:
                cursor.execute(sql.SQL("DROP TABLE pg_temp.{}").format(sql.Identifier(table)))
            cursor.execute("DROP FUNCTION pg_temp.levy_u(text, int)")
        if not connection.in_atomic_block:  # inside an outer transaction (tests), ANALYZE can wait
            self._analyze(started)
        # The bills' counters, recounted from the facts just written (after ANALYZE, so
        # the recount's plans know the tables' sizes).
        step_started = time.monotonic()
        counted = recount(Bill.objects.all())
        self._step("billing_billcounter", f"{counted:>10,} bills", step_started, started)
        if not connection.in_atomic_block:
            self._analyze(started)

    def _step(self, label: str, detail: str, step_started: float, started: float) -> None:
        now = time.monotonic()
        self.stdout.write(
            f"[{next(self._steps)}/{self._total_steps}] {label:<38} {detail:>15}  {now - step_started:6.1f}s"
            f"  (total {now - started:6.1f}s)"
        )

    def _analyze(self, started: float) -> None:
        step_started = time.monotonic()
        with connection.cursor() as cursor:
            for table in TABLES:
                # VACUUM as well: it sets the visibility map, so the member-first indexes are
                # read without visiting the tables (index-only scans), as on a settled database.
                cursor.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        self._step("vacuum, analyze", "", step_started, started)

    def _report(self, started: float) -> None:
        with connection.cursor() as cursor:
            for table in TABLES:
                cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                row = cursor.fetchone()
                self.stdout.write(f"  {table:<30} {row[0] if row else 0:>12,}")
        self.stdout.write(f"done in {time.monotonic() - started:.1f}s")

    # --- template databases -----------------------------------------------------------

    def _admin_connection(self) -> psycopg.Connection[Any]:
        db = connection.settings_dict
        kwargs = {
            "dbname": "postgres",
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
        }
        conninfo = make_conninfo(**{k: v for k, v in kwargs.items() if v is not None})
        return psycopg.connect(conninfo, autocommit=True)

    def _database_exists(self, name: str) -> bool:
        with self._admin_connection() as admin:
            return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None

    def _clone(self, *, source: str, target: str) -> None:
        """CREATE DATABASE target TEMPLATE source; the source must have no other connections."""
        connection.close()
        with self._admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target), sql.Identifier(source))
            )
