"""Composite foreign keys that keep billing rows inside one estate (PostgreSQL).

A bill's target, a dispute's bill and a dispute's member must all belong to the row's
own estate: the database refuses anything else, whatever the code does.
"""

from django.db import migrations

from levy.common.db import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("estates", "0001_initial"),
    ]

    operations = [
        PostgresOnlySQL(
            sql="""
                ALTER TABLE billing_bill ADD CONSTRAINT bill_target_is_member
                    FOREIGN KEY (cluster_id, user_id) REFERENCES estates_membership (cluster_id, user_id)
                    DEFERRABLE INITIALLY DEFERRED;
                ALTER TABLE billing_billdispute ADD CONSTRAINT dispute_bill_in_cluster
                    FOREIGN KEY (cluster_id, bill_id) REFERENCES billing_bill (cluster_id, id)
                    DEFERRABLE INITIALLY DEFERRED;
                ALTER TABLE billing_billdispute ADD CONSTRAINT dispute_user_is_member
                    FOREIGN KEY (cluster_id, user_id) REFERENCES estates_membership (cluster_id, user_id)
                    DEFERRABLE INITIALLY DEFERRED;
            """,
            reverse_sql="""
                ALTER TABLE billing_billdispute DROP CONSTRAINT dispute_user_is_member;
                ALTER TABLE billing_billdispute DROP CONSTRAINT dispute_bill_in_cluster;
                ALTER TABLE billing_bill DROP CONSTRAINT bill_target_is_member;
            """,
        ),
    ]
