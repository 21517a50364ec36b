"""Set-based inserts and updates for imports: one statement per batch with one array
parameter per column (``unnest``), instead of Django's per-object parameter lists. This is what
lets an import write thousands of rows per second."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models
from django.utils import timezone

# Columns whose Python value needs Django's conversion before it reaches the database.
PREPARED = {"JSONField"}


def ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """``count`` fresh primary keys from the table's sequence, so rows can be written with known
    ids (and linked or logged) in the same statement."""
    if not count:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [model._meta.db_table, count],
        )
        return [row[0] for row in cursor.fetchall()]


def column_values(field: models.Field, objects: Sequence[models.Model]) -> list:
    if field.get_internal_type() in PREPARED:
        return [field.get_db_prep_save(getattr(o, field.attname), connection) for o in objects]
    return [getattr(o, field.attname) for o in objects]


def array_type(field: models.Field) -> str:
    db_type = field.db_type(connection) if not field.is_relation else "bigint"
    return "bigint" if db_type.startswith("bigint") else db_type


def objects_insert(
    model: type[models.Model], objects: Sequence[models.Model], *, skip_conflicts: bool = False
) -> None:
    """Insert new objects, giving each its primary key. ``auto_now(_add)`` fields are filled
    as Django would. With ``skip_conflicts`` rows breaking a unique constraint are left out."""
    if not objects:
        return
    for obj, pk in zip(objects, ids_reserve(model, len(objects)), strict=True):
        obj.pk = pk
    fields = [f for f in model._meta.concrete_fields]
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objects:
                field.pre_save(obj, add=True)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    arrays = ", ".join(f"%s::{array_type(f)}[]" for f in fields)
    conflict = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns})"  # noqa: S608
            f" SELECT * FROM unnest({arrays}){conflict}",
            [column_values(f, objects) for f in fields],
        )


def objects_update(
    model: type[models.Model], objects: Sequence[models.Model], names: Sequence[str]
) -> None:
    """Write the given fields of existing objects in one statement."""
    if not objects or not names:
        return
    fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
    arrays = ", ".join(f"%s::{array_type(f)}[]" for f in fields)
    aliases = ", ".join(quote(f.column) for f in fields)
    table = quote(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {assignments}"  # noqa: S608 - names come from the model
            f" FROM unnest(%s::bigint[], {arrays}) AS v(id, {aliases}) WHERE t.id = v.id",
            [[o.pk for o in objects], *[column_values(f, objects) for f in fields]],
        )


def values_insert(model: type[models.Model], rows: Sequence[dict]) -> list[int]:
    """Insert rows given as ``{attname: value}`` without building model instances (the cost
    that dominates big imports); absent fields get their model defaults, ``auto_now(_add)``
    fields the current time. Returns the new ids, in order."""
    if not rows:
        return []
    ids = ids_reserve(model, len(rows))
    now = timezone.now()
    fields = model._meta.concrete_fields
    arrays = []
    for field in fields:
        if field.primary_key:
            values = ids
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values = [now] * len(rows)
        else:
            default = field.get_default()
            values = [row.get(field.attname, default) for row in rows]
            if field.get_internal_type() in PREPARED:
                values = [field.get_db_prep_save(value, connection) for value in values]
        arrays.append(values)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    casts = ", ".join(f"%s::{array_type(f)}[]" for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns})"  # noqa: S608
            f" SELECT * FROM unnest({casts})",
            arrays,
        )
    return ids
