"""Reads from a real streaming replica (DATABASE_REPLICA_URLS): a primary and a replica made
with pg_basebackup, a real server process in front of them, and the replica's replay paused
to show what a user sees while it lags."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import psycopg
import pytest
import requests

from tests.server import BASE_DIR, running_server, socket_url, streaming_replica

DATABASE = "cdphub_replicas"
STICKY_SECONDS = 2


def manage(database_url: str, *args: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def sql(socket_dir: str, statement: str, dbname: str = DATABASE):
    with psycopg.connect(host=socket_dir, user="postgres", dbname=dbname, autocommit=True) as c:
        return (
            c.execute(statement).fetchall()
            if statement.lstrip().upper().startswith("SELECT")
            else c.execute(statement)
        )


def wait_until_replayed(primary: str, replica: str) -> None:
    ((target,),) = sql(primary, "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + 30
    while sql(replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0] is not True:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The primary and the replica, a migrated database with a superuser and an API key, and
    a server reading from the replica."""
    with streaming_replica(tmp_path_factory.mktemp("pg")) as (primary, replica):
        sql(primary, f'CREATE DATABASE "{DATABASE}"', dbname="postgres")
        primary_url, replica_url = socket_url(primary, DATABASE), socket_url(replica, DATABASE)
        manage(primary_url, "migrate", "--verbosity", "0")
        manage(primary_url, "setup_roles")
        out = manage(primary_url, "create_api_key", "--name", "reader", "--scopes", "crm:read")
        key = out.splitlines()[1]
        env = {
            "DATABASE_REPLICA_URLS": replica_url,
            "CDPHUB_REPLICA_STICKY_SECONDS": str(STICKY_SECONDS),
            "CDPHUB_INGEST_PROCESSING": "off",
        }
        with running_server(database_url=primary_url, env=env) as url:
            wait_until_replayed(primary, replica)
            yield {
                "primary": primary,
                "replica": replica,
                "url": url,
                "key": key,
                "primary_url": primary_url,
            }


@pytest.fixture
def paused(hub):
    """The replica stops replaying: it lags behind the primary until the test ends."""
    sql(hub["replica"], "SELECT pg_wal_replay_pause()")
    yield
    sql(hub["replica"], "SELECT pg_wal_replay_resume()")
    wait_until_replayed(hub["primary"], hub["replica"])


def company_names(session: requests.Session, hub) -> list[str]:
    answer = session.get(
        f"{hub['url']}/api/crm/companies/",
        headers={"Authorization": f"Api-Key {hub['key']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return [company["name"] for company in answer.json()["results"]]


def admin_session(hub) -> requests.Session:
    session = requests.Session()
    login = f"{hub['url']}/admin/login/"
    page = session.get(login, timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        login,
        data={
            "username": "admin",
            "password": "replica-pass-1",
            "csrfmiddlewaretoken": token,
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=30,
    )
    assert answer.url.endswith("/admin/"), answer.url
    return session


def test_api_reads_come_from_the_replica(hub, paused):
    manage(
        hub["primary_url"],
        "shell",
        "-c",
        "from crm.models import Company; Company.objects.create(name='Written meanwhile')",
    )

    assert "Written meanwhile" not in company_names(requests.Session(), hub)  # replica: lags
    sql(hub["replica"], "SELECT pg_wal_replay_resume()")
    wait_until_replayed(hub["primary"], hub["replica"])
    assert "Written meanwhile" in company_names(requests.Session(), hub)


def test_a_new_api_key_works_at_once_while_the_replica_lags(hub, paused):
    out = manage(hub["primary_url"], "create_api_key", "--name", "new", "--scopes", "crm:read")
    key = out.splitlines()[1]

    answer = requests.get(
        f"{hub['url']}/api/crm/companies/",
        headers={"Authorization": f"Api-Key {key}"},
        timeout=30,
    )

    assert answer.status_code == 200  # keys are read from the primary


def test_who_saved_a_form_sees_the_change_while_others_see_the_replica(hub, paused):
    manage(
        hub["primary_url"],
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_superuser('admin', '', 'replica-pass-1')",
    )
    saver, other = admin_session(hub), admin_session(hub)
    time.sleep(STICKY_SECONDS + 0.5)  # logging in is a write: let its stickiness pass
    add = f"{hub['url']}/admin/crm/company/add/"
    page = saver.get(add, timeout=30)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))

    saved = saver.post(
        add,
        data={**hidden, "name": "Saved by me", "_save": "Save"},
        headers={"Referer": add},
        timeout=30,
    )

    assert saved.url.endswith("/admin/crm/company/"), re.findall(r"errorlist.{0,300}", saved.text)
    assert "Saved by me" in saved.text  # the list it was sent back to reads the primary
    listing = other.get(f"{hub['url']}/admin/crm/company/", timeout=30)
    assert listing.status_code == 200
    assert "Saved by me" not in listing.text  # another browser reads the lagging replica
    time.sleep(STICKY_SECONDS + 0.5)
    again = saver.get(f"{hub['url']}/admin/crm/company/", timeout=30)
    assert "Saved by me" not in again.text  # stickiness passed: the replica again
