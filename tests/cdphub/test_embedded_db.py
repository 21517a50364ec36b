"""The embedded PostgreSQL: starts from the wheel, creates the database, keeps data across runs."""

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from cdphub.embedded_db import DATABASE_NAME, ensure_database, socket_dir, start_server


def test_embedded_server_starts_creates_the_database_and_keeps_data(tmp_path):
    pgdata = tmp_path / "var" / "pgdata"

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
