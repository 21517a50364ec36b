from __future__ import annotations

from celery import shared_task
from django.db import transaction

from crm.imports.jobs import import_job_apply, import_job_validate
from crm.imports.linking import import_job_link_profiles
from crm.models import ImportJob


@shared_task(ignore_result=True)
def run_import_job_task(job_id: int, apply: bool = False, valid_rows_only: bool = False) -> None:
    """Check (or, with ``apply``, write) one import job; progress is kept on the job. With
    ``valid_rows_only`` the valid rows are written and the others given back in a file."""
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        return  # deleted meanwhile
    if apply and valid_rows_only:
        if job.status in (ImportJob.Status.VALIDATED, ImportJob.Status.INVALID):
            profiles_link_later(import_job_apply(job=job, valid_rows_only=True))
    elif apply:
        if job.status == ImportJob.Status.VALIDATED:
            profiles_link_later(import_job_apply(job=job))
    elif job.status == ImportJob.Status.PENDING:
        import_job_validate(job=job)


@shared_task(ignore_result=True)
def link_import_profiles_task(job_id: int) -> None:
    """Link the contacts of an applied import to CDP profiles."""
    job = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.APPLIED).first()
    if job is not None:
        import_job_link_profiles(job=job)


@shared_task(ignore_result=True)
def send_task_reminders_task() -> int:
    """Beat, every minute: the task reminders that have come due, each sent once."""
    from crm.reminders import reminders_send

    return reminders_send()


def profiles_link_later(job: ImportJob) -> None:
    """After an applied contact import commits, link its contacts to CDP profiles in the
    background: identity work is heavier than the import and must not hold its transaction."""
    if job.status == ImportJob.Status.APPLIED and job.resource == ImportJob.Resource.CONTACTS:
        transaction.on_commit(lambda: link_import_profiles_task.delay(job.pk))
