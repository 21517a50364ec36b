"""Queues per workload with a real broker and real workers: an import waiting for (or taking)
its workers never delays the processing of collected events, which has its own queue and
worker."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import requests
from celery.exceptions import AlwaysEagerIgnored
from django.conf import settings

from cdphub.celery import app
from crm.imports.jobs import import_job_create
from crm.models import ImportJob
from profiles.models import Event
from profiles.services import source_create
from tests.profiles.test_collect_worker import require_redis, wait_for
from tests.server import BASE_DIR, current_database_url, running_server

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

# A database number of its own, so no other test's worker takes these tasks.
BROKER_URL = os.environ.get("CDPHUB_TEST_QUEUES_BROKER_URL", "redis://127.0.0.1:6379/12")
ROWS = 20_000


def worker(queues: str, env: dict) -> subprocess.Popen:
    celery = Path(sys.executable).with_name("celery")
    return subprocess.Popen(  # noqa: S603 - fixed arguments
        [str(celery), "-A", "cdphub", "worker", "-Q", queues, "--pool=solo", "--loglevel=warning"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


def big_contact_import() -> ImportJob:
    lines = ["email,first_name,last_name"]
    lines += [f"person{n}@example.com,Person,{n}" for n in range(ROWS)]
    return import_job_create(
        resource="contacts",
        mode="upsert",
        key_field="email",
        file_name="contacts.csv",
        data="\n".join(lines).encode(),
    )


def purge_queues() -> None:
    """Tasks a stopped run of this test left behind would be taken by its workers."""
    with app.connection_for_write(BROKER_URL) as connection:
        for queue in settings.WORKLOADS:
            connection.default_channel.queue_purge(queue)


def queue_import(job: ImportJob) -> None:
    """As the admin does, but to the test's broker (this process runs tasks in-process)."""
    with warnings.catch_warnings(), app.connection_for_write(BROKER_URL) as connection:
        # This process runs its own tasks in-process; this one goes to the broker on purpose.
        warnings.simplefilter("ignore", AlwaysEagerIgnored)
        app.send_task("crm.tasks.run_import_job_task", args=[job.pk], connection=connection)


def track(n: int) -> dict:
    return {"type": "track", "userId": f"u-{n}", "event": "Order Completed", "messageId": f"m-{n}"}


def test_events_are_processed_while_an_import_waits_for_and_runs_on_its_own_queue():
    require_redis()
    purge_queues()
    source, key = source_create(name="Queues")
    env = {
        "CELERY_BROKER_URL": BROKER_URL,
        "CDPHUB_INGEST_PROCESSING": "celery",
        "DATABASE_URL": current_database_url(),
    }
    ingest = worker("ingest", env)
    imports = None
    try:
        with running_server(database_url=env["DATABASE_URL"], env=env) as url:
            # An import is queued while no import worker runs: it waits in its queue...
            job = big_contact_import()
            queue_import(job)
            sent = requests.post(
                f"{url}/v1/batch", json={"batch": [track(1), track(2)]}, auth=(key, ""), timeout=30
            )
            assert sent.status_code == 200
            # ...and the events do not wait behind it.
            assert wait_for(lambda: Event.objects.filter(source=source).count() == 2)
            job.refresh_from_db()
            assert job.status == ImportJob.Status.PENDING

            # The import worker starts and takes it; events sent meanwhile are processed too.
            imports = worker("imports", env)
            assert wait_for(
                lambda: ImportJob.objects.get(pk=job.pk).status != ImportJob.Status.PENDING
            )
            sent = requests.post(
                f"{url}/v1/batch", json={"batch": [track(3), track(4)]}, auth=(key, ""), timeout=30
            )
            assert sent.status_code == 200
            assert wait_for(lambda: Event.objects.filter(source=source).count() == 4)
            assert wait_for(
                lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.VALIDATED,
                seconds=180,
            )
    finally:
        stop(ingest)
        if imports is not None:
            stop(imports)
