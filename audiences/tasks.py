from __future__ import annotations

from celery import shared_task

from audiences.services import provider_file_import_run, visitor_data_purge


@shared_task(ignore_result=True)
def import_provider_file_task(job_id: int) -> None:
    provider_file_import_run(job_id=job_id)


@shared_task(ignore_result=True)
def purge_visitor_data_task() -> None:
    visitor_data_purge()
