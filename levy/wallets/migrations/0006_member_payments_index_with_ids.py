from django.db import migrations, models

import levy.common.db


class Migration(migrations.Migration):
    # CREATE / DROP INDEX CONCURRENTLY cannot run in a transaction; writes go on meanwhile.
    atomic = False

    dependencies = [
        ("wallets", "0005_refunds_of_live_bills"),
    ]

    operations = [
        # The new index first, so the member list never runs without one.
        levy.common.db.AddIndexConcurrentlyOnPostgres(
            model_name="transaction",
            index=models.Index(
                condition=models.Q(("status", "completed"), ("type", "bill_payment")),
                fields=["payer", "bill"],
                include=["id"],
                name="tx_member_payments_id_idx",
            ),
        ),
        levy.common.db.RemoveIndexConcurrentlyOnPostgres(
            model_name="transaction",
            name="tx_member_payments_idx",
        ),
    ]
