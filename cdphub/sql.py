"""Statements with their parameters bound server-side in binary, on Django's connection and in
its transaction. For the hot set-based statements (imports, suppression checks) that pass
thousands of values as one array: Django binds parameters client-side, quoting every element
into the SQL text, which then costs more than the database's own work."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from django.db import connection


def query(sql: str, params: Sequence = (), *, fetch: bool = True) -> list[tuple]:
    """Run ``sql`` (placeholders ``%b``); the rows, in binary, when ``fetch``."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall() if fetch else []
