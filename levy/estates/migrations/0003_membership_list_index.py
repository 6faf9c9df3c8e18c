from django.db import migrations, models

import levy.common.db


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; writes go on meanwhile.
    atomic = False

    dependencies = [
        ("estates", "0002_billable_members_count"),
    ]

    operations = [
        levy.common.db.AddIndexConcurrentlyOnPostgres(
            model_name="membership",
            index=models.Index(fields=["cluster", "joined_at", "id"], name="membership_list_idx"),
        ),
    ]
