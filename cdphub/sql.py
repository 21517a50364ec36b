"""Raw statements on the hot paths (event processing and what it feeds), on Django's
connection and therefore in the caller's transaction."""

from __future__ import annotations

import psycopg
from django.db import connection


def query(sql: str, params: list, *, fetch: bool = True) -> list[tuple]:
    """Parameters bound server-side in binary (``%b``) and binary results: no client-side
    quoting of big arrays, no text parsing of timestamps."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall() if fetch else []
