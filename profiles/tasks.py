from __future__ import annotations

from celery import shared_task

from profiles.processing import pending_process


@shared_task(ignore_result=True)
def process_pending_task() -> int:
    """Process every collected message waiting in the staging table."""
    return pending_process()
