"""COPY-based bulk writing: the demo data volume (millions of rows) is too big for row inserts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models

from cdphub.sql import query


def ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """Take ``count`` primary keys from the table's sequence, so rows can reference each other
    before they are written."""
    if count <= 0:
        return []
    table = model._meta.db_table
    column = model._meta.pk.column
    rows = query(
        "SELECT nextval(pg_get_serial_sequence(%b::text, %b::text))"
        " FROM generate_series(1, %b::int)",
        [table, column, count],
    )
    return [row[0] for row in rows]


def rows_copy(
    model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Write rows into the model's table with ``COPY``. ``fields`` are model field names (FKs by
    ``<name>_id``); dicts and lists are written as JSON."""
    defaults = missing_defaults(model, fields)
    columns = [field_column(model, name) for name in fields] + [f.column for f in defaults]
    extra = [field.get_default() for field in defaults]
    quoted = ", ".join(connection.ops.quote_name(column) for column in columns)
    table = connection.ops.quote_name(model._meta.db_table)
    written = 0
    # Django's cursor for COPY, which cdphub.sql (bound parameters only) cannot stream.
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {table} ({quoted}) FROM STDIN"  # noqa: S608 - names come from model metadata
        ) as copy,
    ):
        for row in rows:
            values = [*row, *extra]
            copy.write_row([json.dumps(v) if isinstance(v, dict | list) else v for v in values])
            written += 1
    return written


def missing_defaults(model: type[models.Model], fields: Sequence[str]) -> list[models.Field]:
    """Required columns the caller did not list but whose field has a default: a field added to
    the model later must not break the demo data."""
    given = {field_column(model, name) for name in fields}
    return [
        field
        for field in model._meta.concrete_fields
        if field.column not in given
        and not field.primary_key
        and not field.null
        and field.has_default()
        and field.db_default is models.NOT_PROVIDED
    ]


def field_column(model: type[models.Model], name: str) -> str:
    try:
        return model._meta.get_field(name).column
    except FieldDoesNotExist:
        return model._meta.get_field(name.removesuffix("_id")).column
