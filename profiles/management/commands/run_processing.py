"""The processing process that runs beside the web workers when there is no broker (started
by ``cdphub/gunicorn_conf.py``): web processes only stage what they collect; this one process
processes it, and sends to destinations, so no web worker ever shares its CPU time with that
work."""

from __future__ import annotations

import logging
import os
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Process collected messages as they arrive, and send destinations' deliveries, until "
        "stopped (SIGTERM) or the parent process is gone: the processing process of a "
        "deployment without a broker."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--poll-seconds",
            type=float,
            default=None,
            help="How often to look for new messages when none wait "
            "(default CDPHUB_PROCESSING_POLL_SECONDS).",
        )

    def handle(self, *args, poll_seconds=None, **options):
        from cdphub.delivery import deliveries_send
        from profiles.ingest.processing import pending_process

        poll = poll_seconds or settings.CDPHUB_PROCESSING_POLL_SECONDS
        parent = os.getppid()
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        self.stdout.write(f"processing collected messages (looking every {poll} s)")
        while not stopping and os.getppid() == parent:
            try:
                busy = pending_process() > 0
                if settings.CDPHUB_DELIVERY == "process":
                    busy = deliveries_send() > 0 or busy
            except Exception:  # logged; the rows stay staged or pending for the next pass
                logger.exception("processing failed; trying again")
                close_old_connections()
                busy = False
            if not busy:
                time.sleep(poll)
