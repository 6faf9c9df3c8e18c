"""Database helpers shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.migrations.operations import AddIndex
from django.db.migrations.operations.base import Operation


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


class PostgresOnlySQL(Operation):
    """A reversible raw-SQL migration step that runs on PostgreSQL and is skipped elsewhere.

    Used for guarantees SQLite cannot express (composite foreign keys between estate
    tables, ledger triggers). SQLite is only the demo's zero-setup database; tests,
    benchmarks and production run on PostgreSQL.
    """

    reversible = True
    reduces_to_sql = True

    def __init__(self, sql: str, reverse_sql: str):
        self.sql = sql
        self.reverse_sql = reverse_sql

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.sql, params=None)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.reverse_sql, params=None)

    def describe(self) -> str:
        return "PostgreSQL-only SQL"

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            [],
            {"sql": self.sql, "reverse_sql": self.reverse_sql},
        )


class AddIndexConcurrentlyOnPostgres(AddIndex):
    """``AddIndex`` that builds the index with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL
    (no lock that stops writes on a large table; the migration must be ``atomic = False``)
    and plainly elsewhere (the SQLite demo). Backwards: ``DROP INDEX CONCURRENTLY``."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)
        return None

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)
        return None


def refresh_for_share(instance: Any) -> None:
    """Reload ``instance`` from its row and hold the row FOR SHARE until the transaction
    ends, in one query (see :func:`lock_row_for_share`). Cached relations are kept."""
    if connection.vendor != "postgresql":
        instance.refresh_from_db()
        return
    model = type(instance)
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.pk.column)
    # Identifiers come from the model; the key is a parameter.
    rows = list(model.objects.raw(f"SELECT * FROM {table} WHERE {column} = %s FOR SHARE", [instance.pk]))  # noqa: S608
    if not rows:
        raise model.DoesNotExist
    for field in model._meta.concrete_fields:
        setattr(instance, field.attname, getattr(rows[0], field.attname))


def insert_unless_exists(instance: Any, conflict_field: str) -> bool:
    """INSERT ``instance`` unless a row with the same ``conflict_field`` exists (a unique
    column): one statement, no savepoint. Returns whether it was inserted."""
    model = type(instance)
    qn = connection.ops.quote_name
    fields = list(model._meta.concrete_fields)
    columns = ", ".join(qn(f.column) for f in fields)
    values = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in fields]
    placeholders = ", ".join(["%s"] * len(fields))
    statement = (
        f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT ({qn(model._meta.get_field(conflict_field).column)}) DO NOTHING "
        f"RETURNING {qn(model._meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        inserted = cursor.fetchone() is not None
    instance._state.adding = not inserted
    instance._state.db = connection.alias
    return inserted


def lock_row_for_share(model: Any, pk: Any) -> None:
    """Take a FOR SHARE lock on one row until the transaction ends.

    Many transactions can hold it at once (residents paying the same estate-wide bill),
    but it excludes a concurrent UPDATE of the row (a cancellation or a change of
    terms), which waits for them — or which they wait for and then see. SQLite runs
    one writer at a time, so there is nothing to lock there.
    """
    if connection.vendor != "postgresql":
        return
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE {column} = %s FOR SHARE", [pk])  # noqa: S608 - names are quoted identifiers
