"""The bill-day load test's data: top the wallets up before the run, check the money after.

Run from the project directory with the environment of the server under test::

    python -m loadtest.billday fund --amount 5000.00
    python -m loadtest.billday check --title "Bill day levy" --stats results/loadtest_X/locust_stats.csv

``fund`` credits one bill's amount, through the wallet service (a ledger entry and an
audit event each), to every resident of the treasurer's estate whose wallet holds less
than the amount, so that no payment of the run is refused for lack of money.

``check`` reads the bill back from the database after the run: acknowledgements and
completed payments must match the successful requests Locust counted, nobody may have
paid twice or without acknowledging, no wallet may be below zero and every wallet's
balance must equal the sum of its ledger. It exits 1 if any of that fails.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

DOMAIN = "estate0.bench.levy.test"


def fund_wallets(*, access: Any, amount: Decimal, idempotency_key: str) -> int:
    """Credit ``amount`` to each active resident of ``access``'s estate whose wallet
    holds less than ``amount``; return how many wallets were credited."""
    from levy.estates.models import Membership
    from levy.wallets.models import Wallet
    from levy.wallets.services import wallet_credit

    cluster = access.cluster
    enough = Wallet.objects.filter(cluster=cluster, balance__gte=amount).values("user_id")
    short = (
        Membership.objects.filter(cluster=cluster, active=True, is_resident=True)
        .exclude(user_id__in=enough)
        .select_related("user")
        .order_by("joined_at", "id")
    )
    credited = 0
    for membership in short.iterator(chunk_size=500):
        wallet_credit(
            access=access,
            membership=membership,
            amount=amount,
            note="Top-up before the bill day load test",
            idempotency_key=idempotency_key,
        )
        credited += 1
    return credited


@dataclass(frozen=True)
class BillFacts:
    acknowledged: int
    paid: int
    failed_payments: int
    paid_twice: int
    paid_unacknowledged: int
    negative_wallets: int
    ledger_mismatches: int
    members: int
    due_notifications: int
    seconds_to_last_payment: float  # from the bill's creation to its last payment


def bill_facts(bill: Any) -> BillFacts:
    """The database's view of one bill after the run, and the estate's wallets."""
    from django.db.models import Count, DecimalField, F, Max, Q, Sum, Value
    from django.db.models.functions import Coalesce

    from levy.billing.models import BillAcknowledgement
    from levy.estates.models import Membership
    from levy.notifications.models import Notification
    from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet

    payments = Transaction.objects.filter(bill=bill, type=TransactionType.BILL_PAYMENT)
    completed = payments.filter(status=TransactionStatus.COMPLETED)
    acknowledgers = BillAcknowledgement.objects.filter(bill=bill).values("user_id")
    ledger = Coalesce(
        Sum("transactions__amount", filter=Q(transactions__status=TransactionStatus.COMPLETED)),
        Value(Decimal("0.00")),
        output_field=DecimalField(),
    )
    last_payment = completed.aggregate(last=Max("created_at"))["last"]
    return BillFacts(
        acknowledged=BillAcknowledgement.objects.filter(bill=bill).count(),
        paid=completed.count(),
        failed_payments=payments.filter(status=TransactionStatus.FAILED).count(),
        # Live payments: not refunded while the bill was live (decision 0028).
        paid_twice=completed.exclude(reversals__reopens_bill=True)
        .values("payer_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count(),
        paid_unacknowledged=completed.exclude(payer_id__in=acknowledgers).count(),
        negative_wallets=Wallet.objects.filter(cluster_id=bill.cluster_id, balance__lt=0).count(),
        ledger_mismatches=Wallet.objects.filter(cluster_id=bill.cluster_id)
        .annotate(ledger=ledger)
        .exclude(balance=F("ledger"))
        .count(),
        members=Membership.objects.filter(cluster_id=bill.cluster_id, active=True, is_resident=True).count(),
        due_notifications=Notification.objects.filter(event_key=f"PAYMENT_DUE:bill:{bill.pk}").count(),
        seconds_to_last_payment=(last_payment - bill.created_at).total_seconds() if last_payment else 0.0,
    )


def successes(stats_csv: Path) -> dict[str, int]:
    """Successful requests per name from Locust's ``*_stats.csv``."""
    with stats_csv.open(newline="") as handle:
        return {
            row["Name"]: int(row["Request Count"]) - int(row["Failure Count"])
            for row in csv.DictReader(handle)
            if row.get("Name") and row.get("Type")
        }


def problems(facts: BillFacts, ok: dict[str, int]) -> list[str]:
    """What is wrong with the money after the run (empty: nothing)."""
    found = []
    acknowledged_ok = ok.get("resident: acknowledge", 0)
    paid_ok = ok.get("resident: pay", 0)
    if facts.acknowledged != acknowledged_ok:
        found.append(f"{facts.acknowledged} acknowledgements stored, {acknowledged_ok} acknowledged requests")
    if facts.paid != paid_ok:
        found.append(f"{facts.paid} payments stored, {paid_ok} successful payment requests")
    for label, value in [
        ("failed payments", facts.failed_payments),
        ("residents who paid twice", facts.paid_twice),
        ("payments without an acknowledgement", facts.paid_unacknowledged),
        ("wallets below zero", facts.negative_wallets),
        ("wallets whose balance differs from their ledger", facts.ledger_mismatches),
    ]:
        if value:
            found.append(f"{value} {label}")
    return found


def _staff_access(email: str) -> Any:
    from levy.accounts.models import User
    from levy.estates.access import access_cluster
    from levy.estates.models import Membership

    user = User.objects.get(email=email)
    membership = Membership.objects.filter(user=user, active=True).order_by("joined_at").first()
    if membership is None:
        raise SystemExit(f"{email} is not an active member of any estate")
    return access_cluster(user, membership.cluster_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.billday", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fund = commands.add_parser("fund", help="top up the wallets that cannot pay the bill")
    fund.add_argument("--amount", type=Decimal, required=True)
    fund.add_argument("--treasurer", default=f"treasurer@{DOMAIN}")
    check = commands.add_parser("check", help="check the money after the run")
    check.add_argument("--title", required=True, help="the title of the bill the test created")
    check.add_argument("--admin", default=f"admin@{DOMAIN}")
    check.add_argument("--stats", type=Path, required=True, help="Locust's *_stats.csv")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()

    if args.command == "fund":
        access = _staff_access(args.treasurer)
        credited = fund_wallets(access=access, amount=args.amount, idempotency_key=f"bill-day-top-up-{args.amount}")
        print(f"credited {args.amount} to {credited} wallets of {access.cluster.name} that held less")
        return 0

    from levy.billing.models import Bill

    access = _staff_access(args.admin)
    bill = (
        Bill.objects.filter(cluster=access.cluster, title=args.title, user__isnull=True).order_by("-created_at").first()
    )
    if bill is None:
        print(f"no estate-wide bill titled {args.title!r} in {access.cluster.name}")
        return 1
    facts = bill_facts(bill)
    ok = successes(args.stats)
    acks_ok, paid_ok = ok.get("resident: acknowledge", 0), ok.get("resident: pay", 0)
    print(f"bill {bill.reference} ({bill.amount} {access.cluster.currency}), {access.cluster.name}, in the database:")
    for label, value, note in [
        ("acknowledgements", facts.acknowledged, f"successful 'resident: acknowledge': {acks_ok}"),
        ("completed payments", facts.paid, f"successful 'resident: pay': {paid_ok}"),
        ("failed payments", facts.failed_payments, ""),
        ("paid twice", facts.paid_twice, ""),
        ("paid unacknowledged", facts.paid_unacknowledged, ""),
        ("wallets below zero", facts.negative_wallets, ""),
        ("balance != ledger", facts.ledger_mismatches, "wallets of the estate"),
        ("PAYMENT_DUE in inboxes", facts.due_notifications, f"of {facts.members} residents, fanned out by the worker"),
    ]:
        print(f"  {label:<24}{value:>6}" + (f"  ({note})" if note else ""))
    if facts.paid:
        minutes = facts.seconds_to_last_payment / 60
        print(
            f"  {facts.paid} residents paid within {minutes:.1f} min of the bill's creation"
            f" ({facts.paid / minutes:.0f} a minute)"
        )
    found = problems(facts, ok)
    for problem in found:
        print(f"MONEY CHECK FAILED: {problem}")
    if not found:
        print("money check passed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
