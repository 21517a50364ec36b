"""Collection with a real broker and a real Celery worker: while the worker is stopped messages
wait in staging; when it starts, the queued task processes them all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from profiles.models import Event, PendingMessage
from profiles.services import source_create
from tests.server import BASE_DIR, current_database_url, running_server

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

# A database number of its own, so no other test's worker takes these tasks.
BROKER_URL = os.environ.get("CDPHUB_TEST_INGEST_BROKER_URL", "redis://127.0.0.1:6379/13")


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def require_redis() -> None:
    """Skip without Redis, except under CI, where the broker tests must run."""
    if not redis_reachable():
        if os.environ.get("CI"):
            pytest.fail("CI must run the broker tests: Redis is not reachable on 127.0.0.1:6379")
        pytest.skip("needs Redis on 127.0.0.1:6379")


@pytest.fixture
def broker():
    require_redis()
    return BROKER_URL


def wait_for(condition, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_messages_wait_for_a_stopped_worker_and_are_processed_when_it_starts(broker):
    source, key = source_create(name="Worker test")
    env = {
        "CELERY_BROKER_URL": broker,
        "CDPHUB_INGEST_PROCESSING": "celery",
        "DATABASE_URL": current_database_url(),
    }
    batch = {
        "batch": [
            {"type": "identify", "userId": "u-1", "traits": {"email": "anna@example.com"}},
            {"type": "track", "userId": "u-1", "event": "Order Completed"},
        ]
    }
    # Given a server queuing tasks to a broker no worker listens to
    with running_server(database_url=env["DATABASE_URL"], env=env) as url:
        response = requests.post(f"{url}/v1/batch", json=batch, auth=(key, ""), timeout=30)
    assert response.status_code == 200
    assert PendingMessage.objects.filter(source=source).count() == 2
    assert not Event.objects.exists()

    # When the worker starts
    celery = Path(sys.executable).with_name("celery")
    worker = subprocess.Popen(  # noqa: S603 - fixed arguments
        [str(celery), "-A", "cdphub", "worker", "--pool=solo", "--loglevel=warning"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
    )
    try:
        # Then everything that waited is processed, once
        assert wait_for(lambda: Event.objects.filter(source=source).count() == 2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert not PendingMessage.objects.exists()
