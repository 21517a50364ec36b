"""Thin Celery tasks of the shared pieces: ids in, one service call."""

from __future__ import annotations

from celery import shared_task

from cdphub.delivery import deliveries_send
from profiles.destinations.audience import audience_syncs_queue


# Requeued if its worker dies: a batch interrupted mid-send is still pending and is sent
# again with the same idempotency key.
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def send_deliveries_task() -> int:
    """Send every batch due in the outbox (queued after events are processed; beat runs it
    every few seconds for retries that come due, and for audience syncs behind)."""
    audience_syncs_queue()
    return deliveries_send()
