"""The embedded PostgreSQL: starts from the wheel, creates the database, keeps data across runs."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from cdphub.embedded_db import (
    DATABASE_NAME,
    ensure_database,
    forget_dead_handles,
    socket_dir,
    start_server,
)


@pytest.fixture
def scratch_dir():
    # Under var/ like the real data directory: the server's system user must be able to reach it,
    # which pytest's private tmp directories do not allow.
    (settings.BASE_DIR / "var").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="embedded-test-", dir=settings.BASE_DIR / "var"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_server_starts_creates_the_database_and_keeps_data(scratch_dir):
    pgdata = scratch_dir / "pgdata"

    server = start_server(pgdata)
    ensure_database(server, DATABASE_NAME)
    ensure_database(server, DATABASE_NAME)  # a second start-up must not fail on the existing db
    with psycopg.connect(host=socket_dir(server), user="postgres", dbname=DATABASE_NAME) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    server.cleanup()  # the last handle stops the server
    assert not (pgdata / "postmaster.pid").exists()

    server = start_server(pgdata)
    try:
        with psycopg.connect(
            host=socket_dir(server), user="postgres", dbname=DATABASE_NAME
        ) as conn:
            assert conn.execute("SELECT value FROM kept").fetchone() == ("still here",)
    finally:
        server.cleanup()


@pytest.mark.skipif(bool(settings.DATABASE_URL), reason="DATABASE_URL is set: not embedded")
def test_settings_use_the_embedded_server_under_var():
    database = settings.DATABASES["default"]
    assert database["HOST"].startswith(str(settings.BASE_DIR / "var"))
    assert connection.vendor == "postgresql"


def test_killed_processes_do_not_keep_the_server_running_forever(tmp_path):
    # A process killed without running its exit handlers stays in the list of users; the
    # server would never stop. Dead processes are forgotten at the next start.
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([os.getpid(), 4_000_000]))

    forget_dead_handles(tmp_path)

    assert json.loads(handles.read_text()) == [os.getpid()]
