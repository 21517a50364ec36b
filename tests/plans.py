"""What PostgreSQL's statistics say about how tables were read, for tests of query plans."""

from __future__ import annotations

import time

from django.db import connection


def scanned_whole(table: str) -> int:
    """How many times ``table`` was read whole (sequential scans)."""
    return _table_statistic(table, "seq_scan")


def rows_read(table: str) -> int:
    """How many rows of ``table`` were read, by whole scans and through indexes."""
    return _table_statistic(table, "seq_tup_read + coalesce(idx_tup_fetch, 0)")


def _table_statistic(table: str, expression: str) -> int:
    """One of PostgreSQL's counts for ``table``. This connection's own are reported first;
    other connections report theirs when they end or go idle: waited for."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        counts = []
        for _ in range(20):
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                f"SELECT {expression} FROM pg_stat_user_tables WHERE relname = %s",  # noqa: S608 - expressions of this module
                [table],
            )
            counts.append(cursor.fetchone()[0])
            if counts[-3:] == [counts[-1]] * 3:
                break
            time.sleep(0.1)
        return counts[-1]
