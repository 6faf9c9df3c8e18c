from django.db import migrations, models

import levy.common.db


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; writes go on meanwhile.
    atomic = False

    dependencies = [
        ("estates", "0003_membership_list_index"),
    ]

    operations = [
        levy.common.db.AddIndexConcurrentlyOnPostgres(
            model_name="membership",
            index=models.Index(fields=["cluster", "role"], name="membership_role_idx", condition=models.Q(active=True)),
        ),
    ]
