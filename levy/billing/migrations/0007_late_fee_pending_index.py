from django.db import migrations, models

import levy.common.db


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; writes go on meanwhile.
    atomic = False

    dependencies = [
        ("billing", "0006_late_fees"),
    ]

    operations = [
        levy.common.db.AddIndexConcurrentlyOnPostgres(
            model_name="bill",
            index=models.Index(
                condition=models.Q(
                    ("cancelled_at__isnull", True),
                    ("late_fees_issued_at__isnull", True),
                    models.Q(("late_fee_kind", ""), _negated=True),
                ),
                fields=["due_date"],
                name="late_fee_pending_idx",
            ),
        ),
    ]
