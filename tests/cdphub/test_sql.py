"""The statement helpers of ``cdphub.sql`` on the real database."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, transaction

from cdphub.sql import (
    atomic_retried_on_deadlock,
    execute,
    execute_without_jit,
    query,
    query_in_index_order,
)

pytestmark = pytest.mark.django_db


def test_execute_without_jit_runs_the_statement_with_jit_off_and_leaves_the_session_alone():
    execute("SET jit = on")
    execute("CREATE TEMP TABLE seen (jit text)")
    changed = execute_without_jit("INSERT INTO seen SELECT current_setting('jit')")
    assert changed == 1
    assert query("SELECT jit FROM seen") == [("off",)]
    assert query("SELECT current_setting('jit')") == [("on",)]


def test_execute_without_jit_joins_the_callers_transaction():
    execute("CREATE TEMP TABLE kept (n int)")
    with pytest.raises(RuntimeError), transaction.atomic():
        execute_without_jit("INSERT INTO kept VALUES (1)")
        raise RuntimeError("the caller fails after the statement")
    assert query("SELECT count(*) FROM kept") == [(0,)]
    assert connection.in_atomic_block  # the test's own transaction is still open


def test_a_failing_statement_without_jit_raises_its_own_error():
    from django.db import ProgrammingError

    with pytest.raises(ProgrammingError, match="no_such_table"):
        execute_without_jit("INSERT INTO no_such_table VALUES (1)")


def test_query_in_index_order_runs_without_sorting_and_puts_the_setting_back():
    execute("SET LOCAL enable_sort = on")
    assert query_in_index_order("SELECT current_setting('enable_sort')") == [("off",)]
    assert query("SELECT current_setting('enable_sort')") == [("on",)]


def failing_then(errors: list[Exception]):
    """Work that raises each of ``errors`` in turn, then writes a row and says how many tries
    it took."""
    tries = []

    def work() -> int:
        tries.append(1)
        execute("INSERT INTO tried VALUES (%b)", [len(tries)])
        if errors:
            raise errors.pop(0)
        return len(tries)

    return work


@pytest.fixture
def tried_table():
    execute("CREATE TEMP TABLE tried (n int)")


def test_a_deadlocked_transaction_is_run_again_with_nothing_of_it_kept(tried_table, caplog):
    work = failing_then([OperationalError("deadlock detected")])

    assert atomic_retried_on_deadlock(work, attempts=3, retrying="again, please") == 2
    assert query("SELECT n FROM tried") == [(2,)]  # the first try was rolled back
    assert "again, please" in caplog.text


def test_other_errors_and_the_last_deadlock_are_raised(tried_table):
    with pytest.raises(OperationalError, match="connection lost"):
        atomic_retried_on_deadlock(
            failing_then([OperationalError("connection lost")]), attempts=3, retrying=""
        )
    deadlocks = [OperationalError("deadlock detected") for _ in range(3)]
    with pytest.raises(OperationalError, match="deadlock"):
        atomic_retried_on_deadlock(failing_then(deadlocks), attempts=3, retrying="")
    assert query("SELECT n FROM tried") == []
