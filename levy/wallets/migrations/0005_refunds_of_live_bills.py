"""Refunds of live bills (docs/decisions/0028-refunds-of-live-bills.md).

1. ``settlement`` on a bill payment (how many of the payer's earlier payments of the
   bill were refunded while it was live) and ``reopens_bill`` on a refund (the bill was
   not cancelled: the payment stops counting as paid). Both have a database default,
   so adding them rewrites no row, and every existing entry keeps its meaning: all
   existing payments are first payments, all existing refunds are of cancelled bills.
2. The one-payment constraint becomes one completed payment per (bill, payer,
   settlement), built before the old one is dropped so that there is always one.
   Built CONCURRENTLY and the CHECKs validated after they are added: the ledger is the
   largest table and payments go on meanwhile (hence ``atomic = False``).
3. The append-only trigger also guards the two new columns.
4. A payment after the first (settlement n > 0) needs the member's payment n - 1 to have
   been refunded while the bill was live: with the unique constraint, at most one of a
   member's payments of a bill counts as paid, whatever writes the ledger. First
   payments (n = 0, nearly all of them) do not run it: the trigger's WHEN skips them.
"""

from django.conf import settings
from django.db import migrations, models

import levy.common.db

GUARD = """
CREATE OR REPLACE FUNCTION levy_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger entry % is append-only and cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id
        OR NEW.cluster_id <> OLD.cluster_id
        OR NEW.wallet_id <> OLD.wallet_id
        OR NEW.type <> OLD.type
        OR NEW.amount <> OLD.amount
        OR NEW.bill_id IS DISTINCT FROM OLD.bill_id
        OR NEW.payer_id <> OLD.payer_id
        OR NEW.initiated_by_id <> OLD.initiated_by_id
        OR NEW.reference <> OLD.reference
        OR NEW.idempotency_key <> OLD.idempotency_key
        OR NEW.retry_of_id IS DISTINCT FROM OLD.retry_of_id
        OR NEW.reverses_id IS DISTINCT FROM OLD.reverses_id
        OR NEW.created_at <> OLD.created_at{extra} THEN
        RAISE EXCEPTION 'ledger entry % is append-only and cannot be changed', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status <> OLD.status AND OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'ledger entry % has settled (%) and cannot change status', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
"""


ONE_LIVE_PAYMENT = """
CREATE FUNCTION levy_ledger_one_live_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'completed' THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM wallets_transaction p
        WHERE p.bill_id = NEW.bill_id AND p.payer_id = NEW.payer_id AND p.settlement = NEW.settlement - 1
          AND p.type = 'bill_payment' AND p.status = 'completed'
          AND EXISTS (SELECT 1 FROM wallets_transaction r WHERE r.reverses_id = p.id AND r.reopens_bill)
    ) THEN
        RAISE EXCEPTION 'tx_one_live_payment: payment % of bill % by % follows no refund that reopened the bill',
            NEW.settlement, NEW.bill_id, NEW.payer_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER wallets_transaction_one_live_payment
    BEFORE INSERT OR UPDATE ON wallets_transaction
    FOR EACH ROW
    WHEN (NEW.type = 'bill_payment' AND NEW.status = 'completed' AND NEW.settlement > 0)
    EXECUTE FUNCTION levy_ledger_one_live_payment();
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0008_bill_counter_collected_total"),
        ("estates", "0005_member_import"),
        ("wallets", "0004_member_fact_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="transaction",
            name="settlement",
            field=models.IntegerField(
                db_default=0,
                default=0,
                help_text=(
                    "On a bill payment: how many of the payer's earlier payments of the bill were refunded "
                    "while the bill was live (0 for the first). One completed payment per number."
                ),
            ),
        ),
        migrations.AddField(
            model_name="transaction",
            name="reopens_bill",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text=(
                    "On a refund: the bill was not cancelled, so the payment it reverses no longer counts "
                    "as paid and the payer owes the bill again."
                ),
            ),
        ),
        levy.common.db.AddConstraintOnlineOnPostgres(
            model_name="transaction",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "completed"), ("type", "bill_payment")),
                fields=("bill", "payer", "settlement"),
                name="tx_one_payment_per_bill_member_settlement",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="transaction",
            name="tx_one_payment_per_bill_per_member",
        ),
        levy.common.db.AddConstraintOnlineOnPostgres(
            model_name="transaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("settlement", 0), models.Q(("settlement__gt", 0), ("type", "bill_payment")), _connector="OR"
                ),
                name="tx_settlement_on_bill_payments",
            ),
        ),
        levy.common.db.AddConstraintOnlineOnPostgres(
            model_name="transaction",
            constraint=models.CheckConstraint(
                condition=models.Q(("reopens_bill", False), ("type", "refund"), _connector="OR"),
                name="tx_only_refunds_reopen",
            ),
        ),
        levy.common.db.PostgresOnlySQL(
            sql=GUARD.format(
                extra="\n        OR NEW.settlement <> OLD.settlement\n        OR NEW.reopens_bill <> OLD.reopens_bill"
            ),
            reverse_sql=GUARD.format(extra=""),
        ),
        levy.common.db.PostgresOnlySQL(
            sql=ONE_LIVE_PAYMENT,
            reverse_sql="""
                DROP TRIGGER wallets_transaction_one_live_payment ON wallets_transaction;
                DROP FUNCTION levy_ledger_one_live_payment();
            """,
        ),
    ]
