"""Ledger guards in PostgreSQL.

1. Composite foreign keys: a wallet belongs to a member of its estate, and a ledger
   entry's wallet and bill belong to the entry's own estate.
2. An append-only trigger: no ledger entry is ever deleted, and none changes its
   amount, type, wallet, links or key; only a pending entry may settle.
"""

from django.db import migrations

from levy.common.db import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0001_initial"),
        ("billing", "0002_estate_composite_keys"),
        ("estates", "0001_initial"),
    ]

    operations = [
        PostgresOnlySQL(
            sql="""
                ALTER TABLE wallets_wallet ADD CONSTRAINT wallet_owner_is_member
                    FOREIGN KEY (cluster_id, user_id) REFERENCES estates_membership (cluster_id, user_id)
                    DEFERRABLE INITIALLY DEFERRED;
                ALTER TABLE wallets_transaction ADD CONSTRAINT tx_wallet_in_cluster
                    FOREIGN KEY (cluster_id, wallet_id) REFERENCES wallets_wallet (cluster_id, id)
                    DEFERRABLE INITIALLY DEFERRED;
                ALTER TABLE wallets_transaction ADD CONSTRAINT tx_bill_in_cluster
                    FOREIGN KEY (cluster_id, bill_id) REFERENCES billing_bill (cluster_id, id)
                    DEFERRABLE INITIALLY DEFERRED;
            """,
            reverse_sql="""
                ALTER TABLE wallets_transaction DROP CONSTRAINT tx_bill_in_cluster;
                ALTER TABLE wallets_transaction DROP CONSTRAINT tx_wallet_in_cluster;
                ALTER TABLE wallets_wallet DROP CONSTRAINT wallet_owner_is_member;
            """,
        ),
        PostgresOnlySQL(
            sql="""
                CREATE FUNCTION levy_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
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
                        OR NEW.created_at <> OLD.created_at THEN
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
                CREATE TRIGGER wallets_transaction_append_only
                    BEFORE UPDATE OR DELETE ON wallets_transaction
                    FOR EACH ROW EXECUTE FUNCTION levy_ledger_append_only();
            """,
            reverse_sql="""
                DROP TRIGGER wallets_transaction_append_only ON wallets_transaction;
                DROP FUNCTION levy_ledger_append_only();
            """,
        ),
    ]
