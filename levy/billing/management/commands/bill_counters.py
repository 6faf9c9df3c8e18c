"""Check the per-bill counters against the facts, or rebuild them.

manage.py bill_counters --check [--cluster ID]     exit 1 and list bills that drifted
manage.py bill_counters --rebuild [--cluster ID]   recount from the facts
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from levy.billing.counters import counters_drift, recount
from levy.billing.models import Bill


class Command(BaseCommand):
    help = "Check the per-bill counters against a recount from the facts (--check), or rebuild them (--rebuild)."

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--check", action="store_true")
        mode.add_argument("--rebuild", action="store_true")
        parser.add_argument("--cluster", help="Only this estate's bills (estate id).")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        bills = Bill.objects.all()
        if options["cluster"]:
            try:
                cluster_id = uuid.UUID(options["cluster"])
            except ValueError:
                raise CommandError("--cluster must be an estate id (a UUID).") from None
            bills = bills.filter(cluster_id=cluster_id)
        if options["rebuild"]:
            n = recount(bills)
            self.stdout.write(f"recounted {n} bills in {time.monotonic() - started:.1f}s")
            return
        drifts = counters_drift(bills)
        for d in drifts:
            self.stdout.write(f"bill {d.bill_id}: counters {d.counted} != facts {d.recomputed}")
        checked = bills.count()
        self.stdout.write(f"checked {checked} bills in {time.monotonic() - started:.1f}s: {len(drifts)} drifted")
        if drifts:
            raise CommandError(f"{len(drifts)} bills' counters differ from their facts")
