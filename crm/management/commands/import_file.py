from __future__ import annotations

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from crm.importfiles import ImportRefused
from crm.imports.jobs import import_job_apply, import_job_create, import_job_validate
from crm.models import ImportJob, SalesTeam
from crm.resources import SPECS
from crm.tasks import profiles_link_later


class Command(BaseCommand):
    help = (
        "Import contacts, companies, deals or activities from a CSV or XLSX file. The file is "
        "checked first; it is applied whole or not at all, and the job can be reverted in the "
        "admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--resource", required=True, choices=sorted(SPECS))
        parser.add_argument("--mode", required=True, choices=ImportJob.Mode.values)
        parser.add_argument("--key", required=True, help="Field matching existing rows.")
        parser.add_argument("--dry-run", action="store_true", help="Check only; write nothing.")
        parser.add_argument(
            "--valid-rows-only",
            type=Path,
            metavar="REJECTED_CSV",
            help="Write the valid rows and save the others, with the reason, to this CSV file "
            "(to fix and import again); without it, all rows or none.",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="HEADER=FIELD",
            help="Map a column to a field ('-' ignores it, custom.KEY is a custom field, "
            "new:TYPE creates a custom field of that type named after the column); repeatable.",
        )
        parser.add_argument(
            "--owner", metavar="USERNAME", help="Owner of the records created without one."
        )
        parser.add_argument(
            "--owner-team",
            metavar="TEAM",
            help="Share the records created without an owner round-robin in this sales team.",
        )
        parser.add_argument(
            "--skip-unknown",
            action="store_true",
            help="Ignore the columns that are no field (with a warning) instead of refusing "
            "the file.",
        )

    def handle(self, *args, **options):
        overrides = parse_maps(options["map"])
        try:
            file = options["file"].open("rb")
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}") from None
        try:
            with file:  # streamed into the database, never held whole in memory
                job = import_job_create(
                    resource=options["resource"],
                    mode=options["mode"],
                    key_field=options["key"],
                    file_name=options["file"].name,
                    data=file,
                    overrides=overrides,
                    skip_unknown=options["skip_unknown"],
                    new_records_owner=named(get_user_model(), "username", options["owner"]),
                    new_records_team=named(SalesTeam, "name", options["owner_team"]),
                )
        except ImportRefused as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if options["dry_run"]:
            self.stdout.write(f"Import job {job.pk}: checking {job.file_name} (dry run)")
            job = import_job_validate(job=job, progress=self.progress)
            self.report(job)
            if job.status != ImportJob.Status.VALIDATED:
                raise CommandError(f"The file has errors. {job.message}".strip())
            self.stdout.write("Dry run: nothing was written.")
            return
        # Applying checks every row too, and writes nothing if any row fails (unless the valid
        # rows only are wanted): one pass.
        rejected_path = options["valid_rows_only"]
        how = "valid rows only" if rejected_path else "all or nothing"
        self.stdout.write(f"Import job {job.pk}: importing {job.file_name} ({how})")
        job = import_job_apply(
            job=job,
            progress=self.progress,
            checked_first=False,
            valid_rows_only=rejected_path is not None,
        )
        profiles_link_later(job)
        self.report(job)
        if job.status != ImportJob.Status.APPLIED:
            raise CommandError(f"Nothing was written. {job.message}".strip())
        if rejected_path is not None:
            self.save_rejected(job, rejected_path)
        self.stdout.write(self.style.SUCCESS(job.message))

    def save_rejected(self, job: ImportJob, path: Path) -> None:
        data = ImportJob.objects.filter(pk=job.pk).values_list("rejected_file", flat=True).get()
        if data is None:
            return
        try:
            path.write_bytes(bytes(data))
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}") from None
        self.stdout.write(f"The rows left out are in {path}.")

    def progress(self, job: ImportJob) -> None:
        total = max(job.rows_total, job.rows_done, 1)
        filled = int(30 * job.rows_done / total)
        bar = "#" * filled + "-" * (30 - filled)
        sys.stderr.write(f"\r[{bar}] {job.rows_done}/{total} rows, {job.error_count} errors")
        sys.stderr.flush()

    def report(self, job: ImportJob) -> None:
        sys.stderr.write("\n")
        ignored = (job.column_map or {}).get("ignored", [])
        if ignored:
            names = ", ".join(repr(header) for header in ignored)
            self.stderr.write(f"Warning: columns that are no field were ignored: {names}")
        self.stdout.write(
            f"{job.rows_done} rows: {job.created_count} new, {job.updated_count} updated, "
            f"{job.skipped_count} skipped, {job.error_count} errors"
        )
        for error in job.errors[:50]:
            where = f"row {error['row']}, column {error['column']}: " if error["row"] else ""
            self.stderr.write(f"  {where}{error['message']}")
        if job.error_count > 50:
            self.stderr.write(f"  ... and {job.error_count - 50} more (see the job in the admin)")
        if job.warning_count:
            self.stderr.write(f"{job.warning_count} value(s) kept with a warning:")
        for warning in job.warnings[:20]:
            self.stderr.write(
                f"  row {warning['row']}, column {warning['column']}: {warning['message']}"
            )
        if job.warning_count > 20:
            self.stderr.write(f"  ... and {job.warning_count - 20} more (see the job in the admin)")


def named(model, field: str, value: str | None):
    """The record named ``value`` (None for none), or a clear error."""
    if value is None:
        return None
    found = model.objects.filter(**{field: value}).first()
    if found is None:
        raise CommandError(f"No {model._meta.verbose_name} with {field} {value!r}.")
    return found


def parse_maps(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        header, sep, field = value.partition("=")
        if not sep or not header.strip() or not field.strip():
            raise CommandError(f"--map {value!r} must look like 'Header name=field'.")
        overrides[header.strip()] = field.strip()
    return overrides
