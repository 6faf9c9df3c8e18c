"""``manage.py check_ledger``: verify the money invariants of the database it points at.

Three invariants, each checked by one set-based query, so a database of 50,000
wallets is checked in seconds:

1. every wallet's balance equals the sum of its completed ledger entries (pending and
   failed entries move nothing; the rule of ``levy.wallets.selectors.ledger_balance``);
2. no balance is below zero;
3. per estate, the wallets' balances plus the estate's revenue (completed bill payments
   net of refunds, as ``cluster_revenue``) equal the money received (completed deposits
   and adjustments, as ``cluster_money_received``).

It prints a summary, lists the first offenders of each invariant, and exits with
status 1 when anything is violated. It only reads, in one read-only snapshot, so it
can run against a live database, a restored backup or a replica. PostgreSQL only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from levy.estates.models import Cluster
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet

BALANCE_MATCHES_LEDGER = "balance = sum of completed entries"
BALANCE_NOT_NEGATIVE = "no negative balance"
MONEY_CONSERVED = "wallets + revenue = money received, per estate"
CHECKS = (BALANCE_MATCHES_LEDGER, BALANCE_NOT_NEGATIVE, MONEY_CONSERVED)

REVENUE_TYPES = (TransactionType.BILL_PAYMENT.value, TransactionType.REFUND.value)
RECEIVED_TYPES = (TransactionType.DEPOSIT.value, TransactionType.ADJUSTMENT.value)


@dataclass
class LedgerReport:
    database: str
    wallets: int = 0
    estates: int = 0
    entries: int = 0
    # check -> how many rows break it, and a description of the first ``limit`` of them
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    offenders: dict[str, list[str]] = field(default_factory=lambda: {check: [] for check in CHECKS})

    @property
    def violations(self) -> int:
        return sum(self.counts.values())


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _wallet_mismatches(cursor: Any, limit: int) -> tuple[int, list[str]]:
    wallet, entry = Wallet._meta.db_table, Transaction._meta.db_table
    cursor.execute(
        f"""
        SELECT w.id, w.cluster_id, w.user_id, w.balance, COALESCE(l.total, 0), COUNT(*) OVER ()
        FROM {wallet} w
        LEFT JOIN (
            SELECT wallet_id, SUM(amount) AS total
            FROM {entry}
            WHERE status = %s
            GROUP BY wallet_id
        ) l ON l.wallet_id = w.id
        WHERE w.balance <> COALESCE(l.total, 0)
        ORDER BY w.cluster_id, w.id
        LIMIT %s
        """,  # noqa: S608 - table names come from the models, values are parameters
        [TransactionStatus.COMPLETED.value, limit],
    )
    rows = cursor.fetchall()
    lines = [
        f"wallet {wallet_id} (estate {cluster_id}, member {user_id}): balance {_money(balance)}, "
        f"completed entries sum to {_money(ledger)}"
        for wallet_id, cluster_id, user_id, balance, ledger, _ in rows
    ]
    return (rows[0][-1] if rows else 0), lines


def _negative_balances(cursor: Any, limit: int) -> tuple[int, list[str]]:
    cursor.execute(
        f"""
        SELECT id, cluster_id, user_id, balance, COUNT(*) OVER ()
        FROM {Wallet._meta.db_table}
        WHERE balance < 0
        ORDER BY cluster_id, id
        LIMIT %s
        """,  # noqa: S608 - the table name comes from the model, values are parameters
        [limit],
    )
    rows = cursor.fetchall()
    lines = [
        f"wallet {wallet_id} (estate {cluster_id}, member {user_id}): balance {_money(balance)}"
        for wallet_id, cluster_id, user_id, balance, _ in rows
    ]
    return (rows[0][-1] if rows else 0), lines


def estate_totals(cursor: Any) -> list[tuple[Any, str, Decimal, int, Decimal, Decimal, int]]:
    """One row per estate: id, name, sum of balances, wallets, revenue, money received, entries."""
    cluster, wallet, entry = Cluster._meta.db_table, Wallet._meta.db_table, Transaction._meta.db_table
    cursor.execute(
        f"""
        SELECT c.id, c.name,
               COALESCE(w.balances, 0), COALESCE(w.wallets, 0),
               COALESCE(t.revenue, 0), COALESCE(t.received, 0), COALESCE(t.entries, 0)
        FROM {cluster} c
        LEFT JOIN (
            SELECT cluster_id, SUM(balance) AS balances, COUNT(*) AS wallets
            FROM {wallet}
            GROUP BY cluster_id
        ) w ON w.cluster_id = c.id
        LEFT JOIN (
            SELECT cluster_id,
                   -SUM(CASE WHEN type IN (%s, %s) THEN amount ELSE 0 END) AS revenue,
                   SUM(CASE WHEN type IN (%s, %s) THEN amount ELSE 0 END) AS received,
                   COUNT(*) AS entries
            FROM {entry}
            WHERE status = %s
            GROUP BY cluster_id
        ) t ON t.cluster_id = c.id
        ORDER BY c.name, c.id
        """,  # noqa: S608 - table names come from the models, values are parameters
        [*REVENUE_TYPES, *RECEIVED_TYPES, TransactionStatus.COMPLETED.value],
    )
    return list(cursor.fetchall())


def ledger_report(using: str = DEFAULT_DB_ALIAS, limit: int = 20) -> LedgerReport:
    """Check the three invariants on ``using``; list at most ``limit`` offenders per check."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise CommandError(f"check_ledger runs on PostgreSQL; the database {using!r} is {connection.vendor}.")
    report = LedgerReport(database=str(connection.settings_dict["NAME"]))
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if outermost:
            # One snapshot for every query, and a promise not to write.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        estates = estate_totals(cursor)
        report.estates = len(estates)
        for cluster_id, name, balances, wallets, revenue, received, entries in estates:
            report.wallets += wallets
            report.entries += entries
            if balances + revenue != received:
                report.counts[MONEY_CONSERVED] += 1
                if len(report.offenders[MONEY_CONSERVED]) < limit:
                    report.offenders[MONEY_CONSERVED].append(
                        f"estate {cluster_id} ({name}): wallets {_money(balances)} + revenue {_money(revenue)} "
                        f"= {_money(balances + revenue)}, money received {_money(received)}"
                    )
        for check, query in ((BALANCE_MATCHES_LEDGER, _wallet_mismatches), (BALANCE_NOT_NEGATIVE, _negative_balances)):
            report.counts[check], report.offenders[check] = query(cursor, limit)
    return report


class Command(BaseCommand):
    help = (
        "Verify the money invariants: each wallet balance equals the sum of its completed ledger entries, "
        "no balance is negative, and per estate wallets + revenue = money received. Exits 1 on any violation."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias to check (default: %(default)s)."
        )
        parser.add_argument(
            "--limit", type=int, default=20, help="Offenders listed per invariant (default: %(default)s)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        report = ledger_report(using=options["database"], limit=limit)
        entries = _count(report.entries, "completed ledger entry", "completed ledger entries")
        self.stdout.write(
            f"Ledger check of database {report.database}: {_count(report.wallets, 'wallet')}, "
            f"{_count(report.estates, 'estate')}, {entries}."
        )
        for check in CHECKS:
            count = report.counts[check]
            line = f"  {check}: {_count(count, 'violation')}"
            self.stdout.write(self.style.ERROR(line) if count else line)
            for offender in report.offenders[check]:
                self.stdout.write(f"    {offender}")
            if count > len(report.offenders[check]):
                self.stdout.write(f"    … and {count - len(report.offenders[check])} more")
        if report.violations:
            raise CommandError(f"The ledger check found {report.violations} violation(s).")
        self.stdout.write(self.style.SUCCESS("OK: no violations."))
