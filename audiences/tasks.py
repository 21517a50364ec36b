from __future__ import annotations

from celery import shared_task
from django.db import transaction

from audiences.lookalike import lookalike_build_run
from audiences.services import provider_file_import_run


@shared_task(ignore_result=True)
def import_provider_file_task(job_id: int) -> None:
    provider_file_import_run(job_id=job_id)


@shared_task(ignore_result=True)
def purge_visitor_data_task() -> None:
    """Hourly: the DMP's short retention, through the retention policy (recorded on it)."""
    from consent.services import retention_purge

    retention_purge(category="visitor_data")


@shared_task(ignore_result=True)
def build_lookalike_task(audience_id: int) -> None:
    """A queued lookalike build (``lookalike_build_request``); a deleted audience is skipped."""
    lookalike_build_run(audience_id=audience_id)


def provider_file_import_later(job) -> None:
    """Import a stored provider file in the background, once its upload is committed."""
    transaction.on_commit(lambda: import_provider_file_task.delay(job.pk))


def lookalike_build_later(audience) -> None:
    """Build a lookalike marked as queued, once the request is committed."""
    transaction.on_commit(lambda: build_lookalike_task.delay(audience.pk))
