"""Collection and processing through database and worker faults, with a real server, a real
PostgreSQL backend terminated under it, and a real Celery worker killed mid-backlog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests
from django.db import connection

from profiles.ingest.collect import messages_collect
from profiles.models import Event, PendingMessage
from profiles.services import source_create
from tests.profiles.test_collect_worker import require_redis, wait_for
from tests.server import BASE_DIR, current_database_url, running_server

# A database number of its own, so no other test's worker takes these tasks.
BROKER_URL = os.environ.get("CDPHUB_TEST_FAULTS_BROKER_URL", "redis://127.0.0.1:6379/12")


def terminate_other_backends() -> int:
    """What a PostgreSQL restart or a failover does to every connection but ours."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_collection_works_again_right_after_its_database_connection_is_cut():
    source, key = source_create(name="Fault test")
    env = {"CDPHUB_INGEST_PROCESSING": "off"}
    with running_server(database_url=current_database_url(), workers=1, env=env) as url:

        def send(n: int) -> int:
            message = {"userId": "u-1", "event": "E", "messageId": f"m-{n}"}
            return requests.post(
                f"{url}/v1/track", json=message, auth=(key, ""), timeout=30
            ).status_code

        assert send(0) == 200  # the server now holds a persistent connection
        assert terminate_other_backends() >= 1

        # The first request after the fault may fail (and the client retries it);
        # every later one works.
        first = send(1)
        assert first in (200, 500)
        assert [send(n) for n in range(2, 7)] == [200] * 5
    stored = set(PendingMessage.objects.filter(source=source).values_list("message_id", flat=True))
    assert stored >= {"m-0", "m-2", "m-3", "m-4", "m-5", "m-6"}


@pytest.fixture
def broker():
    require_redis()
    redis.Redis.from_url(BROKER_URL).flushdb()
    yield BROKER_URL
    redis.Redis.from_url(BROKER_URL).flushdb()


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    celery = Path(sys.executable).with_name("celery")
    return subprocess.Popen(  # noqa: S603 - fixed arguments
        [str(celery), "-A", "cdphub", "worker", "--pool=solo", "--loglevel=warning"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
    )


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_backlog_of_a_killed_worker_is_processed_by_the_next_worker_without_beat(broker, settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"  # only the worker processes, not this process
    source, key = source_create(name="Killed worker test")
    # Given a backlog staged behind one queued processing task
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "userId": f"u-{n}", "event": "E"} for n in range(6000)],
    )
    env = {
        "CELERY_BROKER_URL": broker,
        "CDPHUB_INGEST_PROCESSING": "celery",
        "CDPHUB_INGEST_PROCESS_BATCH_SIZE": "20",
        "DATABASE_URL": current_database_url(),
    }
    with running_server(database_url=env["DATABASE_URL"], env=env, workers=1) as url:
        message = {"userId": "u-last", "event": "E"}
        assert requests.post(f"{url}/v1/track", json=message, auth=(key, "")).status_code == 200

    # When the worker taking that task is killed in the middle of the backlog
    worker = start_worker(env)
    try:
        assert wait_for(lambda: Event.objects.filter(source=source).exists(), 60)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert PendingMessage.objects.filter(source=source).exists()

    # Then the next worker to start processes the rest, with no new message and no beat
    worker = start_worker(env)
    try:
        assert wait_for(lambda: not PendingMessage.objects.filter(source=source).exists(), 120)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert Event.objects.filter(source=source).count() == 6001
