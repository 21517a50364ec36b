"""The job's life as callers see it: ``import_job_create`` checks the uploaded file and stores it
with the job, ``import_job_validate`` is the dry run (every row checked and previewed),
``import_job_apply`` writes the whole file in one transaction, all rows or none, or the valid
rows with the others given back in a file (its caller then queues the linking of contacts to CDP
profiles: ``crm.tasks.profiles_link_later``); ``import_job_check_actor`` says
who may act on a job. The pass over the file
itself is ``crm.imports.run``."""

from __future__ import annotations

import io
from typing import BinaryIO

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from cdphub.csv_export import SafeCsvWriter
from crm.customfields import mapped_custom_fields_create
from crm.importfiles import (
    HEAD,
    REJECTED_REASON_COLUMN,
    ImportRefused,
    file_check,
    file_store,
    iter_table,
)
from crm.imports.rows import Progress
from crm.imports.run import ImportRun
from crm.models import ImportJob
from crm.resources import SPECS


class ImportFailed(Exception):
    """Apply found errors: everything was rolled back."""


@transaction.atomic
def import_job_create(
    *,
    resource: str,
    mode: str,
    key_field: str,
    file_name: str,
    data: bytes | BinaryIO,
    created_by=None,
    overrides: dict[str, str] | None = None,
    skip_unknown: bool = False,
    new_records_owner=None,
    new_records_team=None,
) -> ImportJob:
    """Store the upload (bytes, or a binary file read a slice at a time) with the job;
    file-level problems are refused here, before anything is kept."""
    spec = SPECS[resource]
    if mode not in ImportJob.Mode.values:
        raise ImportRefused(f"Unknown mode {mode!r}; use create, update or upsert.")
    if key_field not in spec.keys:
        raise ImportRefused(
            f"{key_field!r} cannot key a {resource} import; use one of {', '.join(spec.keys)}."
        )
    if (new_records_owner or new_records_team) and "owner" not in spec.names:
        raise ImportRefused(f"{resource} have no owner: choose no owner for new records.")
    if new_records_owner and new_records_team:
        raise ImportRefused("Choose an owner for new records, or a team to share them, not both.")
    if new_records_team and not new_records_team.members.exists():
        raise ImportRefused(f"The team {new_records_team} has no members to share records among.")
    overrides = import_overrides(spec, overrides or {}, actor=created_by)
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    file_format = file_check(name=file_name, head=stream.read(HEAD), size=size)
    stream.seek(0)
    job = ImportJob.objects.create(
        resource=resource,
        mode=mode,
        key_field=key_field,
        file_name=file_name[:255],
        file_size=size,
        column_map={"overrides": overrides or {}, "skip_unknown": skip_unknown},
        created_by=created_by,
        new_records_owner=new_records_owner,
        new_records_team=new_records_team,
    )
    lines = file_store(job.pk, stream, size)
    # A first estimate for the progress bar (lines of a CSV); the check makes it exact.
    job.rows_total = max(lines - 1, 0) if file_format == "csv" else 0
    job.save(update_fields=["rows_total"])
    # Left unloaded on the instance, as the default manager does, so that saving the job
    # never sends the file again.
    del job.file_data
    return job


def import_overrides(spec, overrides: dict[str, str], *, actor=None) -> dict[str, str]:
    """The column mapping, with the custom fields it asks for (``Header=new:<type>``) created."""
    try:
        return mapped_custom_fields_create(spec.model._meta.model_name, overrides, actor=actor)
    except ValidationError as refused:
        raise ImportRefused(refused.messages) from refused


def import_job_validate(*, job: ImportJob, progress: Progress | None = None) -> ImportJob:
    """The dry run: every row checked and classified (new, updated, skipped, error) with its
    field changes; nothing is written except the job's own record."""
    job.status, job.started_at = ImportJob.Status.VALIDATING, timezone.now()
    job.save(update_fields=["status", "started_at"])
    try:
        # Read-only, but in a transaction: the temporary table of keys seen lives in it.
        with transaction.atomic():
            ImportRun(job, apply=False, progress=progress).execute()
    except ImportRefused as exc:
        return job_refused(job, exc)
    job.status = ImportJob.Status.INVALID if job.error_count else ImportJob.Status.VALIDATED
    job.finished_at = timezone.now()
    job.save()
    return job


def import_job_apply(
    *,
    job: ImportJob,
    progress: Progress | None = None,
    checked_first: bool = True,
    valid_rows_only: bool = False,
) -> ImportJob:
    """Write the whole file in one transaction: every row is checked again and any error rolls
    everything back. With ``valid_rows_only`` the valid rows are written and the others left
    out, in the job's rejected rows file (their original columns and the reason), to fix and
    import again. Imported contacts are linked to CDP profiles afterwards, by the task the
    caller queues (``crm.tasks.profiles_link_later``). Without ``checked_first`` (scripts that
    need no preview) a new job is applied directly: one pass over the file instead of two, with
    the same checks."""
    allowed = [ImportJob.Status.VALIDATED, ImportJob.Status.FAILED]
    if valid_rows_only:
        allowed.append(ImportJob.Status.INVALID)
    if not checked_first:
        allowed.append(ImportJob.Status.PENDING)
    if job.status not in allowed:
        raise ImportRefused(f"Job {job.pk} is {job.get_status_display().lower()}; check it first.")
    job.started_at = job.started_at or timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.APPLYING)
    job.status = ImportJob.Status.APPLYING
    try:
        with transaction.atomic():
            run = ImportRun(job, apply=True, progress=progress, valid_rows_only=valid_rows_only)
            run.execute()
            if job.error_count and not valid_rows_only:
                raise ImportFailed
            job.status, job.finished_at = ImportJob.Status.APPLIED, timezone.now()
            job.valid_rows_only = valid_rows_only
            job.message = (
                f"Applied: {job.created_count} created, {job.updated_count} updated, "
                f"{job.skipped_count} skipped."
            )
            if run.rejected:
                job.rejected_file = rejected_rows_file(job, run.rejected)
                job.message += (
                    f" {len(run.rejected)} row(s) with errors were left out: download them, "
                    "fix them and import them again."
                )
            job.save()
    except ImportFailed:
        job.status = ImportJob.Status.FAILED
        job.message = f"{job.error_count} row error(s): nothing was written."
        job.finished_at = timezone.now()
        job.save()
    except ImportRefused as exc:
        return job_refused(job, exc, status=ImportJob.Status.FAILED)
    except DatabaseError as exc:
        # Rolled back whole, like a row error; the job must not stay "applying" for ever.
        job.status, job.finished_at = ImportJob.Status.FAILED, timezone.now()
        job.message = (
            f"The database refused a write ({exc.__class__.__name__}: {exc}"[:900]
            + "): nothing was written. Check the file again, then apply."
        )
        ImportJob.objects.filter(pk=job.pk).update(
            status=job.status, finished_at=job.finished_at, message=job.message
        )
        raise
    return job


def rejected_rows_file(job: ImportJob, rejected: dict[int, str]) -> bytes:
    """The rows left out, as CSV: the file's header and their cells as they were, and a last
    column ``error`` with the reason; read from the stored file again, one row at a time."""
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    rows = iter_table(job)
    number, header = next(rows)
    writer.writerow([*header, REJECTED_REASON_COLUMN])
    for number, cells in rows:
        if number in rejected:
            writer.writerow([*cells, rejected[number]])
    return out.getvalue().encode()


def import_preview_summary(job: ImportJob) -> str:
    """What each apply mode would write, after the check."""
    writes = f"{job.created_count + job.updated_count} rows ({job.created_count} new, "
    writes += f"{job.updated_count} updated)"
    if not job.error_count:
        return f"Applying writes {writes}, all or nothing."
    rows = job.rows_done - job.created_count - job.updated_count - job.skipped_count
    bad = f"{rows} row has an error" if rows == 1 else f"{rows} rows have errors"
    back = "the other one" if rows == 1 else f"the {rows} others"
    return (
        f"All or nothing writes nothing: {bad}. Valid rows only writes "
        f"{writes} and gives {back} back in a file to fix."
    )


def job_refused(job: ImportJob, exc: ImportRefused, status=ImportJob.Status.INVALID) -> ImportJob:
    job.status, job.finished_at = status, timezone.now()
    job.message = " ".join(exc.messages)
    job.errors = [{"row": "", "column": "", "value": "", "message": job.message}]
    job.error_count = max(job.error_count, 1)
    job.save()
    return job


def import_job_check_actor(*, job: ImportJob, actor) -> None:
    """Only the person who started an import, or a superuser, applies, re-maps or reverts it:
    an import reads and writes the CRM with its creator's sight of it (sales teams), which
    nobody else may borrow. No ``actor`` is the operator running a command."""
    if actor is None or actor.is_superuser or job.created_by_id == actor.pk:
        return
    raise ImportRefused(
        f"Only the person who started this import (job {job.pk}) or a superuser can apply, "
        "re-map or revert it."
    )
