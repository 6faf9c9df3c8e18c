"""Database helpers shared by the apps."""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection
from django.db.migrations.operations import AddConstraint, AddIndex, RemoveIndex
from django.db.migrations.operations.base import Operation
from django.db.models import CheckConstraint


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


class RemoveIndexConcurrentlyOnPostgres(RemoveIndex):
    """``RemoveIndex`` with ``DROP INDEX CONCURRENTLY`` on PostgreSQL (no lock that stops
    writes while it waits for running queries; the migration must be ``atomic = False``)
    and plainly elsewhere. Backwards: ``CREATE INDEX CONCURRENTLY``."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            schema_editor.remove_index(model, index, concurrently=True)
        return None

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            schema_editor.add_index(model, index, concurrently=True)
        return None


class AddConstraintOnlineOnPostgres(AddConstraint):
    """``AddConstraint`` that lets writes go on while PostgreSQL checks the existing rows
    of a large table: a partial unique constraint (an index there) is built with
    ``CREATE UNIQUE INDEX CONCURRENTLY``; a CHECK is added ``NOT VALID`` and then
    validated (``VALIDATE CONSTRAINT`` does not stop writes). The migration must be
    ``atomic = False``. Elsewhere (the SQLite demo) the constraint is added plainly."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return None
        statement = str(self.constraint.create_sql(model, schema_editor))
        qn = schema_editor.quote_name
        if statement.startswith("CREATE UNIQUE INDEX "):
            schema_editor.execute(statement.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX CONCURRENTLY ", 1))
        elif isinstance(self.constraint, CheckConstraint):
            schema_editor.execute(f"{statement} NOT VALID")
            schema_editor.execute(
                f"ALTER TABLE {qn(model._meta.db_table)} VALIDATE CONSTRAINT {qn(self.constraint.name)}"
            )
        else:
            raise ValueError(f"{self.constraint.name}: only partial unique and CHECK constraints are added online")
        return None


def refresh_for_share(instance: Any, *, also: tuple[Any, Any] | None = None) -> None:
    """Reload ``instance`` from its row and hold the row FOR SHARE until the transaction
    ends (see :func:`lock_row_for_share`); ``also=(Model, pk)`` locks that row too, in
    the same statement — or ``also=(Model, {field: value, …})``, the one row with those
    values (it must exist). Cached relations are kept."""
    model = type(instance)
    if connection.vendor != "postgresql":
        instance.refresh_from_db()
        return
    other, other_fields, params = None, (), [instance.pk]
    if also is not None:
        other, key = also
        values = key if isinstance(key, dict) else {other._meta.pk.name: key}
        other_fields = tuple(values)
        params += [db_value(other, name, value) for name, value in values.items()]
    row = fetch_one(_refresh_for_share_sql(model, other, other_fields), params)  # type: ignore[arg-type]
    if row is None:
        raise model.DoesNotExist
    fresh, _ = model_from_row(model, row)
    for field in model._meta.concrete_fields:
        setattr(instance, field.attname, getattr(fresh, field.attname))


@functools.cache
def _refresh_for_share_sql(model: Any, other: Any, other_fields: tuple[str, ...]) -> str:
    qn = connection.ops.quote_name
    statement = f"SELECT {model_columns(model, 'x')} FROM {table(model)} x"  # noqa: S608 - identifiers from the models
    where = f" WHERE x.{qn(model._meta.pk.column)} = %s"
    if other is not None:
        statement += f", {table(other)} y"
        where += "".join(f" AND y.{column(other, name)} = %s" for name in other_fields)
    return statement + where + " FOR SHARE"


@functools.cache
def _insert_sql(model: Any, vendor: str, conflict_fields: tuple[str, ...] | None, with_pk: bool) -> str:
    qn = connection.ops.quote_name
    fields = _insert_fields(model, with_pk)
    columns = ", ".join(qn(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    statement = f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    if conflict_fields is not None:
        conflict = ", ".join(qn(model._meta.get_field(name).column) for name in conflict_fields)
        statement += f" ON CONFLICT ({conflict}) DO NOTHING"
    return statement + f" RETURNING {qn(model._meta.pk.column)}"


def _insert_fields(model: Any, with_pk: bool) -> list[Any]:
    return [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]


def _insert(instance: Any, conflict_fields: tuple[str, ...] | None) -> bool:
    """INSERT ``instance``; a primary key left to the database (an auto field) is read
    back. Returns whether a row was inserted."""
    model: Any = type(instance)
    with_pk = instance.pk is not None
    values = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in _insert_fields(model, with_pk)]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, connection.vendor, conflict_fields, with_pk), values)
        row = cursor.fetchone()
    instance._state.db = connection.alias
    if row is None:
        return False
    if not with_pk:
        instance.pk = model._meta.pk.to_python(row[0])
    instance._state.adding = False
    return True


def insert_row(instance: Any) -> Any:
    """INSERT ``instance`` in one fixed statement: what ``Model.objects.create`` does,
    without building the statement each time. No signals are sent (Levy connects
    none). Returns ``instance``."""
    _insert(instance, None)
    return instance


def insert_unless_exists(instance: Any, *conflict_fields: str) -> bool:
    """INSERT ``instance`` unless a row with the same ``conflict_fields`` exists (a unique
    column or a unique constraint's columns): one statement, no savepoint. Returns
    whether it was inserted."""
    return _insert(instance, conflict_fields)


def lock_row_for_share(model: Any, pk: Any) -> None:
    """Take a FOR SHARE lock on one row until the transaction ends.

    Many transactions can hold it at once (residents paying the same estate-wide bill),
    but it excludes a concurrent UPDATE of the row (a cancellation or a change of
    terms), which waits for them — or which they wait for and then see. SQLite runs
    one writer at a time, so there is nothing to lock there.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(_lock_for_share_sql(model, connection.vendor), [pk])


@functools.cache
def _lock_for_share_sql(model: Any, vendor: str) -> str:
    pk = column(model, model._meta.pk.name)
    return f"SELECT 1 FROM {table(model)} WHERE {pk} = %s FOR SHARE"  # noqa: S608 - identifiers from the model


# --- hot-path reads without the ORM's query compiler ----------------------------------------
#
# Building SQL from a queryset costs 0.3 to 1.7 ms of Python per query (more for annotated
# subqueries), paid again on every request. The few reads every request makes (the
# caller's membership, the bill, its facts) use fixed SQL text instead; the column lists
# come from the models, and rows become model instances through the same converters the
# ORM applies, so what they return is what the ORM would have returned.


def table(model: Any) -> str:
    """The quoted table name of ``model``."""
    return str(connection.ops.quote_name(model._meta.db_table))


def column(model: Any, name: str) -> str:
    """The quoted column of ``model``'s field ``name``."""
    return str(connection.ops.quote_name(model._meta.get_field(name).column))


def model_columns(model: Any, alias: str) -> str:
    """``alias."col", …`` for every concrete field of ``model``, in field order."""
    qn = connection.ops.quote_name
    return ", ".join(f"{alias}.{qn(f.column)}" for f in model._meta.concrete_fields)


def db_value(model: Any, name: str, value: Any) -> Any:
    """``value`` as a parameter for ``model``'s field ``name`` (UUIDs on SQLite, …)."""
    return model._meta.get_field(name).get_db_prep_value(value, connection)


_CONVERTERS: dict[tuple[Any, str], list[tuple[Any, list[Any]]]] = {}


def _converters(model: Any) -> list[tuple[Any, list[Any]]]:
    key = (model, connection.vendor)
    cached = _CONVERTERS.get(key)
    if cached is not None:
        return cached
    out = []
    for f in model._meta.concrete_fields:
        col = f.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    _CONVERTERS[key] = out
    return out


def field_value(model: Any, name: str, value: Any) -> Any:
    """``value`` of ``model``'s field ``name`` as a fixed statement read it, converted as
    the ORM converts it (on SQLite a date and time comes as text)."""
    if value is None:
        return None
    field = model._meta.get_field(name)
    col = field.get_col(model._meta.db_table)
    for func in connection.ops.get_db_converters(col) + col.get_db_converters(connection):
        value = func(value, col, connection)
    return value


def model_from_row(model: Any, row: Any, start: int = 0) -> tuple[Any, int]:
    """The ``model`` instance held by ``row[start:]`` (columns as :func:`model_columns`
    lists them), and the index after its last column."""
    converters = _converters(model)
    values = []
    for offset, (col, funcs) in enumerate(converters):
        value = row[start + offset]
        for func in funcs:
            value = func(value, col, connection)
        values.append(value)
    attnames = [f.attname for f in model._meta.concrete_fields]
    return model.from_db(connection.alias, attnames, values), start + len(converters)


@functools.cache
def _select_sql(model: Any, vendor: str, fields: tuple[str, ...], lock: str) -> str:
    where = " AND ".join(f"{column(model, name)} = %s" for name in fields)
    statement = f"SELECT {model_columns(model, table(model))} FROM {table(model)} WHERE {where}"  # noqa: S608
    return statement + (f" {lock}" if lock and vendor == "postgresql" else "")


def select_one(model: Any, lock: str = "", **equal: Any) -> Any:
    """The one ``model`` row whose fields equal ``equal`` (a unique key), or None, by a
    fixed statement; ``lock="FOR UPDATE"`` locks it on PostgreSQL."""
    names = tuple(equal)
    params = [db_value(model, name, equal[name]) for name in names]
    row = fetch_one(_select_sql(model, connection.vendor, names, lock), params)
    return None if row is None else model_from_row(model, row)[0]


@functools.cache
def _update_sql(model: Any, vendor: str, fields: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{column(model, name)} = %s" for name in fields)
    return f"UPDATE {table(model)} SET {assignments} WHERE {column(model, model._meta.pk.name)} = %s"  # noqa: S608


def update_row(model: Any, pk: Any, **values: Any) -> int:
    """``model.objects.filter(pk=pk).update(**values)`` for plain fields, by a fixed
    statement. Returns the number of rows updated."""
    names = tuple(values)
    params = [model._meta.get_field(name).get_db_prep_save(values[name], connection) for name in names]
    params.append(db_value(model, model._meta.pk.name, pk))
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, connection.vendor, names), params)
        return int(cursor.rowcount)


def fetch_one(statement: str, params: list[Any] | dict[str, Any]) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


def fetch_all(statement: str, params: list[Any] | dict[str, Any]) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())
