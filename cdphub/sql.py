"""Statements with their parameters bound server-side in binary, on Django's connection and in
its transaction: the hot set-based statements of event processing, imports and suppression
checks pass thousands of values as one array. Django binds parameters client-side, quoting every
element into the SQL text, which then costs more than the database's own work."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

logger = logging.getLogger(__name__)

ORM_PLACEHOLDER = re.compile(r"%([%s])")
T = TypeVar("T")


def query(sql: str, params: Sequence = (), *, fetch: bool = True) -> list[tuple]:
    """Run ``sql`` (placeholders ``%b``); the rows, in binary, when ``fetch``. Errors are
    Django's database errors, as from the ORM."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall() if fetch else []


def execute(sql: str, params: Sequence = ()) -> int:
    """Run a statement that returns no rows (placeholders ``%b``); how many rows it changed."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.rowcount


@contextmanager
def pipeline() -> Iterator[None]:
    """Statements run inside are sent without waiting for each one's result (PostgreSQL's
    pipeline mode), so the database works while Python goes on; a statement that fetches
    rows still waits for them. Leaving waits for everything sent, and raises its error."""
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


def execute_without_jit(sql: str, params: Sequence = ()) -> int:
    """``execute`` with PostgreSQL's JIT compilation off, in a transaction (the caller's, or
    one of its own). For the wide set-based statements of computed traits: JIT is chosen on
    the planner's cost estimate, which their grouped joins inflate, and compiling their many
    aggregate expressions took longer than running them (0.55 s became 1.4 s for ten defined
    traits of 10,000 profiles; a 50,000-profile batch of the built-in ones 1.9 s became 2.8 s)."""
    with transaction.atomic(), planner_setting("jit", "off"):
        return execute(sql, params)


def query_in_index_order(sql: str, params: Sequence = ()) -> list[tuple]:
    """``query`` with sorting ruled out, in the caller's transaction, for an ``ORDER BY ...
    LIMIT`` that an index returns in order: a planner that underestimates how many rows match
    (a queue analysed nearly empty) reads and sorts all of them for the first few instead."""
    with planner_setting("enable_sort", "off"):
        return query(sql, params)


@contextmanager
def planner_setting(name: str, value: str) -> Iterator[None]:
    """PostgreSQL's setting ``name`` at ``value`` for the statements inside, in the current
    transaction, then back as it was for the rest of it (a local setting would last until it
    ends); a failure inside rolls the setting back with the transaction or savepoint."""
    ((previous, _),) = query(
        "SELECT current_setting(%b), set_config(%b, %b, true)", [name, name, value]
    )
    yield
    query("SELECT set_config(%b, %b, true)", [name, previous])


def execute_together(sql: str, params: Sequence = ()) -> list[int]:
    """Run several statements separated by ``;`` in one round trip; how many rows each changed.
    Placeholders are ``%s``, quoted into the text: meant for a few values (one collected
    message), where the round trips of separate statements cost more than the statements.

    Sent as one simple query, they run in one transaction when none is open (and in the open
    one otherwise), each statement seeing what others committed before it began, as separate
    statements would."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.ClientCursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        counts = [cursor.rowcount]
        while cursor.nextset():
            counts.append(cursor.rowcount)
        return counts


def any_of(ids: Iterable[int]) -> RawSQL:
    """For ``pk__in=any_of(ids)``: the ids as one array parameter, not one placeholder each
    (a thousand placeholders cost the client more to write than the database to read)."""
    return RawSQL("SELECT unnest(%s::bigint[])", [sorted(ids)])


def orm_sql(queryset: QuerySet) -> tuple[str, tuple]:
    """The queryset's SQL with ``%b`` placeholders, to embed in a statement run by ``query``
    or ``execute`` (Django writes ``%s``, and ``%%`` for a literal ``%``, which server-side
    binding reads the same way)."""
    sql, params = queryset.query.sql_with_params()
    return ORM_PLACEHOLDER.sub(lambda m: "%%" if m.group(1) == "%" else "%b", sql), params


def keyed_lookups_only() -> None:
    """Rule out scans of whole tables for the rest of the current transaction, for work that
    reads and checks rows by key only. PostgreSQL plans a statement on the table sizes it
    knows when it first plans it, and keeps the plan for the connection: a foreign key check
    planned while the profiles table was empty scanned it whole for every contact of an
    import (linking ran at 200 rows/s instead of 10,000 as the table grew), and processing's
    look-ups of identities and staged messages, planned while those tables were small, read
    them whole (460,000 identity rows for 20,000 messages on a hub of 25,000 identities)."""
    execute("SET LOCAL enable_seqscan = off")


def is_deadlock(error: Exception) -> bool:
    """Whether PostgreSQL cancelled the statement to break a deadlock."""
    return isinstance(error, OperationalError) and "deadlock" in str(error)


def atomic_retried_on_deadlock(work: Callable[[], T], *, attempts: int, retrying: str) -> T:
    """``work()`` in a transaction of its own (a savepoint in a caller's), run again when
    PostgreSQL cancels it to break a deadlock, up to ``attempts`` times in all; ``retrying``
    is logged before each new attempt. Other errors, and the last deadlock, are raised."""
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            if not is_deadlock(exc) or attempt == attempts - 1:
                raise
            logger.warning(retrying)
    raise ValueError("attempts must be at least 1")
