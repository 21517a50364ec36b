"""The statement helpers of ``cdphub.sql`` on the real database."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from cdphub.sql import execute, execute_without_jit, query

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
