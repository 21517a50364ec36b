"""Set-based writes (imports, profile linking): one statement per batch with one array parameter
per column (``unnest``), bound server-side in binary (``cdphub.sql.query``), instead of Django's
per-object parameter lists. This is what lets an import write thousands of rows per second."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection, models
from django.utils import timezone

from cdphub.sql import query

# Columns whose Python value needs Django's conversion before it reaches the database.
PREPARED = {"JSONField"}


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """``count`` fresh primary keys from the table's sequence, so rows can be written with known
    ids (and linked or logged) in the same statement."""
    if not count:
        return []
    rows = query(
        "SELECT array_agg(nextval(%b::regclass)) FROM generate_series(1, %b)",
        [id_sequence(model._meta.db_table), count],
    )
    return rows[0][0]


@functools.cache
def id_sequence(table: str) -> str:
    """The sequence of a table's ``id``, looked up once: finding it again for every id cost
    seven times the ids themselves."""
    return query("SELECT pg_get_serial_sequence(%b, 'id')", [table])[0][0]


def prepared(field: models.Field, values: list) -> list:
    if field.get_internal_type() in PREPARED:
        return [field.get_db_prep_save(value, connection) for value in values]
    return values


def column_values(field: models.Field, objects: Sequence[models.Model]) -> list:
    return prepared(field, [getattr(o, field.attname) for o in objects])


def array_type(field: models.Field) -> str:
    db_type = field.db_type(connection) if not field.is_relation else "bigint"
    if db_type.startswith("bigint"):
        return "bigint"
    # A cast to varchar(n) would cut longer values silently; the column itself refuses them.
    return "text" if db_type.startswith("varchar") else db_type


def is_auto_now(field: models.Field) -> bool:
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


def arrays_insert(
    model: type[models.Model],
    fields: Sequence[models.Field],
    arrays: list[list],
    *,
    skip_conflicts: bool = False,
    constants: dict[models.Field, object] | None = None,
) -> list[int]:
    """One INSERT of a column array per field; with ``skip_conflicts``, the ids of the rows
    really written (the others broke a unique constraint). ``constants`` are columns with the
    same value in every row (defaults, timestamps), sent once rather than once per row."""
    constants = constants or {}
    columns = ", ".join(quote(f.column) for f in [*fields, *constants])
    casts = ", ".join(f"%b::{array_type(f)}[]" for f in fields)
    once = "".join(f", %b::{array_type(f)}" for f in constants)
    conflict = " ON CONFLICT DO NOTHING RETURNING id" if skip_conflicts else ""
    rows = query(
        f"INSERT INTO {quote(model._meta.db_table)} ({columns})"  # noqa: S608 - model names
        f" SELECT u.*{once} FROM unnest({casts}) AS u{conflict}",
        [*prepared_constants(constants), *arrays],  # in the order of their placeholders
        fetch=skip_conflicts,
    )
    return [row[0] for row in rows]


def prepared_constants(constants: dict[models.Field, object]) -> list:
    return [prepared(field, [value])[0] for field, value in constants.items()]


def objects_insert(
    model: type[models.Model], objects: Sequence[models.Model], *, skip_conflicts: bool = False
) -> list[int]:
    """Insert new objects, giving each its primary key; returns the ids of the rows written.
    ``auto_now(_add)`` fields are filled as Django would. With ``skip_conflicts`` rows breaking
    a unique constraint are left out (and their ids are not returned)."""
    if not objects:
        return []
    ids = ids_reserve(model, len(objects))
    for obj, pk in zip(objects, ids, strict=True):
        obj.pk = pk
    fields = model._meta.concrete_fields
    for field in fields:
        if is_auto_now(field):
            for obj in objects:
                field.pre_save(obj, add=True)
    arrays = [column_values(f, objects) for f in fields]
    if skip_conflicts:
        return arrays_insert(model, fields, arrays, skip_conflicts=True)
    arrays_insert(model, fields, arrays)
    return ids


def values_insert(model: type[models.Model], rows: Sequence[dict]) -> list[int]:
    """Insert rows given as ``{attname: value}`` without building model instances (the cost
    that dominates big imports); absent fields get their model defaults, ``auto_now(_add)``
    fields the current time; a column with one value for all rows is sent once. Returns the
    new ids, in order."""
    if not rows:
        return []
    ids = ids_reserve(model, len(rows))
    now = timezone.now()
    given = {name for row in rows for name in row}
    fields, arrays, constants = [], [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            fields.append(field)
            arrays.append(ids)
        elif is_auto_now(field):
            constants[field] = now
        elif field.attname not in given:
            constants[field] = field.get_default()
        else:
            default = field.get_default()
            values = [row.get(field.attname, default) for row in rows]
            if all(value is values[0] for value in values):  # one object: the same time, None
                constants[field] = values[0]
            else:
                fields.append(field)
                arrays.append(prepared(field, values))
    arrays_insert(model, fields, arrays, constants=constants)
    return ids


def values_update(model: type[models.Model], rows: Sequence[tuple[int, dict]]) -> None:
    """Write each row's own changed fields, given as ``(id, {attname: value})``, in one
    statement; ``auto_now`` fields get the current time. A row's other columns are left as the
    database holds them, not rewritten from what was read earlier: a bit per row says which
    columns it writes."""
    names = sorted({name for _, values in rows for name in values})
    if not rows or not names:
        return
    fields = [model._meta.get_field(name) for name in names]
    stamped = [f for f in model._meta.concrete_fields if getattr(f, "auto_now", False)]
    masks = [sum(1 << i for i, name in enumerate(names) if name in values) for _, values in rows]
    arrays = [prepared(f, [values.get(f.attname) for _, values in rows]) for f in fields]
    assignments = [
        f"{quote(f.column)} = CASE WHEN (v.written & {1 << i}) <> 0"
        f" THEN v.{quote(f.column)} ELSE t.{quote(f.column)} END"
        for i, f in enumerate(fields)
    ] + [f"{quote(f.column)} = %b" for f in stamped]
    casts = ", ".join(f"%b::{array_type(f)}[]" for f in fields)
    aliases = ", ".join(quote(f.column) for f in fields)
    query(
        f"UPDATE {quote(model._meta.db_table)} AS t SET {', '.join(assignments)}"  # noqa: S608
        f" FROM unnest(%b::bigint[], %b::bigint[], {casts}) AS v(id, written, {aliases})"
        " WHERE t.id = v.id",
        [*[timezone.now() for _ in stamped], [pk for pk, _ in rows], masks, *arrays],
        fetch=False,
    )


def objects_update(
    model: type[models.Model], objects: Sequence[models.Model], names: Sequence[str]
) -> None:
    """Write the given fields of existing objects in one statement."""
    if not objects or not names:
        return
    fields = [model._meta.get_field(name) for name in names]
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
    casts = ", ".join(f"%b::{array_type(f)}[]" for f in fields)
    aliases = ", ".join(quote(f.column) for f in fields)
    query(
        f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments}"  # noqa: S608
        f" FROM unnest(%b::bigint[], {casts}) AS v(id, {aliases}) WHERE t.id = v.id",
        [[o.pk for o in objects], *[column_values(f, objects) for f in fields]],
        fetch=False,
    )
