"""The deployment without a broker that the README recommends: gunicorn with
cdphub/gunicorn_conf.py. Web workers only stage what they collect; one processing process beside
them processes it (and sends to destinations), started and stopped with the server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from profiles.models import Event, PendingMessage
from profiles.services import source_create
from tests.profiles.test_collect_worker import wait_for
from tests.server import current_database_url, running_server

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = "python:cdphub.gunicorn_conf"


def processing_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run_processing" in command and any(part.endswith(b"manage.py") for part in command):
            found.append(int(entry.name))
    return found


def track(n: int, key: str) -> dict:
    return {"userId": f"u-{n}", "event": "Order Completed", "messageId": f"m-{n}", "writeKey": key}


def test_web_workers_stage_and_the_processing_process_beside_them_processes(monkeypatch):
    monkeypatch.delenv("CDPHUB_INGEST_PROCESSING", raising=False)
    monkeypatch.delenv("CDPHUB_DELIVERY", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    source, key = source_create(name="Beside")
    before = set(processing_processes())
    env = {"CDPHUB_PROCESSING_POLL_SECONDS": "0.2"}
    with running_server(
        database_url=current_database_url(), workers=2, env=env, config=CONFIG
    ) as url:
        [processing] = set(processing_processes()) - before
        for n in range(5):
            assert requests.post(f"{url}/v1/track", json=track(n, key), timeout=30).ok
        assert wait_for(lambda: Event.objects.filter(source=source).count() == 5, seconds=30)

        # Without the processing process nothing is processed: the web workers only stage.
        os.kill(processing, signal.SIGTERM)
        assert wait_for(lambda: processing not in processing_processes(), seconds=30)
        for n in range(5, 8):
            assert requests.post(f"{url}/v1/track", json=track(n, key), timeout=30).ok
        time.sleep(2)
        assert PendingMessage.objects.filter(source=source).count() == 3
        assert Event.objects.filter(source=source).count() == 5
    assert set(processing_processes()) - before == set()


def test_the_processing_process_stops_with_the_server(monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    before = set(processing_processes())
    with running_server(database_url=current_database_url(), workers=1, config=CONFIG):
        assert len(set(processing_processes()) - before) == 1
    assert wait_for(lambda: not set(processing_processes()) - before, seconds=30)
