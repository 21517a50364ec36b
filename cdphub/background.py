"""Work the web process hands on without waiting for it: a Celery task queued at most once a
second, or without a broker a thread of the process. Processing of collected messages and the
sending of destinations both go this way."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)


class Throttle:
    """Lets a call through at most once per ``interval`` seconds in this process: one task
    does everything waiting, so a task per request would only flood the broker (the beat
    schedule catches what comes due later)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()

    def ready(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                return False
            self._last = now
            return True


class BackgroundThread:
    """Without a broker: one daemon thread per process runs ``work`` when woken, so requests
    stay fast and the work still gets done on a fresh machine. ``waiting`` (optional) says
    whether work remains that a later wake-up would not announce (retries coming due): then
    the thread looks again after ``poll_seconds()``."""

    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        *,
        failure: str,
        waiting: Callable[[], bool] | None = None,
        poll_seconds: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.work = work
        self.failure = failure
        self.waiting = waiting
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        more = self.waiting is not None
        while True:
            self._wake.wait(timeout=self.poll_seconds() if more and self.poll_seconds else None)
            self._wake.clear()
            try:
                self.work()
                more = self.waiting() if self.waiting is not None else False
            except Exception:
                logger.exception(self.failure)
            finally:
                # This thread's own connection: closed between runs, never left idle open.
                connection.close()
