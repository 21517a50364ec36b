"""Gunicorn's configuration for cdphub (``gunicorn -c python:cdphub.gunicorn_conf
cdphub.wsgi``).

Without a broker, processing of collected messages and sending to destinations run in one
process beside the web workers (``manage.py run_processing``, started and stopped with the
server), not in a thread of each web worker: a busy thread would take the worker's CPU time
from its requests. With ``CELERY_BROKER_URL`` set, Celery workers do that work and nothing is
started here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"

if not os.environ.get("CELERY_BROKER_URL"):
    # Read by the workers' settings: they only stage, the processing process does the rest.
    os.environ.setdefault("CDPHUB_INGEST_PROCESSING", "process")
    os.environ.setdefault("CDPHUB_DELIVERY", "process")


def processing_wanted() -> bool:
    return "process" in (
        os.environ.get("CDPHUB_INGEST_PROCESSING"),
        os.environ.get("CDPHUB_DELIVERY"),
    )


def when_ready(server) -> None:
    if processing_wanted():
        server.log.info("starting the processing process (manage.py run_processing)")
        server.cdphub_processing = subprocess.Popen(  # noqa: S603 - fixed arguments
            [sys.executable, str(MANAGE), "run_processing"]
        )


def on_exit(server) -> None:
    process = getattr(server, "cdphub_processing", None)
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
