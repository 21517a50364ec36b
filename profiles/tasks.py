"""Thin Celery tasks of the CDP: ids in, one service call."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready
from django.db import transaction

from profiles.ingest.processing import pending_process
from profiles.models import ComputedTrait, Segment, SegmentExport


# Requeued if the process running it dies: processing is safe to run twice, and a lost drain
# would leave the backlog until the next message arrives.
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def process_pending_task() -> int:
    """Process every collected message waiting in the staging table."""
    return pending_process()


@worker_ready.connect
def drain_backlog_on_worker_start(**kwargs) -> None:
    """A worker that starts drains what waits in staging. The task of a worker that was killed
    stays unacknowledged in the broker until its visibility timeout (an hour on Redis), and
    beat may not be deployed: without this the backlog would wait for the next message."""
    process_pending_task.delay()


@shared_task(ignore_result=True)
def refresh_segment_task(segment_id: int) -> None:
    from profiles.segments.membership import segment_refresh

    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is not None:  # deleted meanwhile: nothing to do
        segment_refresh(segment=segment)


@shared_task(ignore_result=True)
def refresh_due_segments_task() -> None:
    """Beat, every few minutes: queue a refresh of each segment whose interval has passed,
    that failed last time, or whose refresh died."""
    from profiles.segments.membership import segments_due

    for segment in segments_due():
        transaction.on_commit(lambda pk=segment.pk: refresh_segment_task.delay(pk))


@shared_task(ignore_result=True)
def recompute_traits_task() -> None:
    """Nightly: every profile's computed traits (built-in, with new RFM bounds, and defined)."""
    from profiles.segments.computed import computed_traits_recompute_all

    computed_traits_recompute_all()


@shared_task(ignore_result=True)
def recompute_defined_trait_task(trait_id: int) -> None:
    """A new or changed computed trait, for every profile."""
    from profiles.segments.defined_traits import defined_trait_recompute

    trait = ComputedTrait.objects.filter(pk=trait_id).first()
    if trait is not None:  # deleted meanwhile: nothing to compute
        defined_trait_recompute(trait)


@shared_task(ignore_result=True)
def remove_defined_trait_values_task(key: str) -> None:
    """A deleted computed trait's values leave the profiles."""
    from profiles.segments.defined_traits import defined_trait_values_remove

    defined_trait_values_remove(key)


@shared_task(ignore_result=True)
def expire_trait_windows_task() -> None:
    """Hourly: windowed computed traits of the profiles whose events left the window."""
    from profiles.segments.defined_traits import defined_windows_expire

    defined_windows_expire()


@shared_task(ignore_result=True)
def maintain_event_store_task() -> None:
    """Hourly: the event table's partitions ahead of time (and for events that came before
    theirs was made), and the de-duplication window's expired message ids."""
    from profiles.eventstore import event_partitions_maintain, seen_messages_expire

    event_partitions_maintain()
    seen_messages_expire()


@shared_task(ignore_result=True)
def run_segment_export_task(export_id: int) -> None:
    """Send a requested webhook export; its outcome is recorded on the export."""
    from profiles.segments.exports import segment_export_run

    export = SegmentExport.objects.select_related("segment").filter(pk=export_id).first()
    if export is not None:  # the segment was deleted meanwhile: nothing to send
        segment_export_run(export=export)


@shared_task(ignore_result=True)
def refresh_event_counts_task(recompute_all: bool = False) -> None:
    """Beat: today's and yesterday's event counts every few minutes; the whole window nightly."""
    from profiles.rollups import event_daily_counts_refresh

    event_daily_counts_refresh(recompute_all=recompute_all)
