"""What PostgreSQL's statistics say about how tables were read, for tests of query plans."""

from __future__ import annotations

import time

from django.db import connection


def scanned_whole(table: str) -> int:
    """How many times ``table`` was read whole (sequential scans), as PostgreSQL's statistics
    count them. This connection's own are reported now; other connections report theirs when
    they end or go idle: waited for."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        counts = []
        for _ in range(20):
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = %s", [table])
            counts.append(cursor.fetchone()[0])
            if counts[-3:] == [counts[-1]] * 3:
                break
            time.sleep(0.1)
        return counts[-1]
