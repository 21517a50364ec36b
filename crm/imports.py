"""Spreadsheet import jobs: check (dry run), apply all-or-nothing, revert.

Rows are streamed from the stored file and handled in batches: each batch is parsed, its
references (companies, owners, contacts, stages...) and existing keys are looked up in a few
queries, and on apply it is written with set-based inserts and updates. Memory stays bounded
whatever the file's size: the keys already seen (for duplicate rows) are kept in a temporary
table, not in the process. Every row the import inserts or changes is logged (``ImportChange``)
in the same transaction, so the import can be reverted. The column definitions come from
``crm.resources``.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from itertools import islice
from typing import BinaryIO

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Exists, Min, OuterRef, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone
from psycopg.types.json import Jsonb

from cdphub.bulk import (
    array_type,
    objects_insert,
    objects_update,
    quote,
    values_insert,
    values_update,
)
from cdphub.sql import pipeline, query
from crm import services
from crm.importfiles import (
    HEAD,
    ImportRefused,
    column_letter,
    column_map,
    file_check,
    file_store,
    iter_table,
)
from crm.models import Company, Contact, Deal, ImportChange, ImportJob, Pipeline, Stage, Tag
from crm.resources import SPECS, CellError, ImportSpec
from crm.selectors import visible_to
from profiles.models import Event, Identity, Profile

BATCH_SIZE = 2000
# Contacts linked to profiles per transaction: linking takes an advisory lock per identifier
# (up to three per contact), and PostgreSQL keeps those in its shared lock table.
LINK_BATCH_SIZE = 500
MAX_STORED_ERRORS = 10_000
PREVIEW_ROWS = 100

Progress = Callable[[ImportJob], None]


# PostgreSQL text and JSONB cannot hold a NUL character: such a cell is a row error, found
# while checking, so it never reaches a write (nor the job's error list, which is JSONB).
NUL = "\x00"
NUL_IN_CELL = "contains a NUL character (\\u0000), which cannot be stored: remove it"


class ImportFailed(Exception):
    """Apply found errors: everything was rolled back."""


@dataclass(slots=True)
class Row:
    number: int
    values: dict = field(default_factory=dict)  # field -> parsed value (non-blank cells only)
    errors: list = field(default_factory=list)
    outcome: str = ""  # new / updated / skipped / error
    reason: str = ""
    pk: int | None = None  # the row's record, existing or just inserted
    current: dict | None = None  # an existing record's values (by attname) before the import
    changes: dict = field(default_factory=dict)  # field -> [old, new]
    before: dict | None = None  # previous values of an updated row, for revert

    def fail(self, column: str, message: str, value="") -> None:
        self.errors.append(
            {"row": self.number, "column": column, "value": str(value), "message": message}
        )


# --- Creating and running jobs ------------------------------------------------------------------


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
        column_map={"overrides": overrides or {}},
        created_by=created_by,
    )
    lines = file_store(job.pk, stream, size)
    # A first estimate for the progress bar (lines of a CSV); the check makes it exact.
    job.rows_total = max(lines - 1, 0) if file_format == "csv" else 0
    job.save(update_fields=["rows_total"])
    # Left unloaded on the instance, as the default manager does, so that saving the job
    # never sends the file again.
    del job.file_data
    return job


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
    link_profiles: bool = True,
    checked_first: bool = True,
) -> ImportJob:
    """Write the whole file in one transaction: every row is checked again and any error rolls
    everything back. Imported contacts are then linked to CDP profiles by a background task
    (``link_profiles``). Without ``checked_first`` (scripts that need no preview) a new job is
    applied directly: one pass over the file instead of two, with the same checks."""
    allowed = [ImportJob.Status.VALIDATED, ImportJob.Status.FAILED]
    if not checked_first:
        allowed.append(ImportJob.Status.PENDING)
    if job.status not in allowed:
        raise ImportRefused(f"Job {job.pk} is {job.get_status_display().lower()}; check it first.")
    job.started_at = job.started_at or timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.APPLYING)
    job.status = ImportJob.Status.APPLYING
    try:
        with transaction.atomic():
            run = ImportRun(job, apply=True, progress=progress)
            run.execute()
            if job.error_count:
                raise ImportFailed
            job.status, job.finished_at = ImportJob.Status.APPLIED, timezone.now()
            job.message = (
                f"Applied: {job.created_count} created, {job.updated_count} updated, "
                f"{job.skipped_count} skipped."
            )
            job.save()
            if link_profiles and job.resource == ImportJob.Resource.CONTACTS:
                from crm.tasks import link_import_profiles_task

                transaction.on_commit(lambda: link_import_profiles_task.delay(job.pk))
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


def job_refused(job: ImportJob, exc: ImportRefused, status=ImportJob.Status.INVALID) -> ImportJob:
    job.status, job.finished_at = status, timezone.now()
    job.message = " ".join(exc.messages)
    job.errors = [{"row": "", "column": "", "value": "", "message": job.message}]
    job.error_count = max(job.error_count, 1)
    job.save()
    return job


@contextmanager
def progress_channel(job: ImportJob):
    """Progress goes through its own connection, so the admin sees it while the import's
    transaction is still open."""
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:

        def publish() -> None:
            with side.cursor() as cursor:
                cursor.execute(
                    "UPDATE crm_importjob SET rows_done = %s, rows_total = %s, error_count = %s"
                    " WHERE id = %s",
                    [job.rows_done, job.rows_total, job.error_count, job.pk],
                )

        yield publish
    finally:
        side.close()


# --- One pass over the file -------------------------------------------------------------------


class ImportRun:
    def __init__(self, job: ImportJob, *, apply: bool, progress: Progress | None):
        self.job, self.apply, self.progress = job, apply, progress
        self.spec: ImportSpec = SPECS[job.resource]
        self.references = References(self.spec)

    def execute(self) -> None:
        job = self.job
        job.rows_done = job.created_count = job.updated_count = job.skipped_count = 0
        job.error_count, job.errors, job.preview = 0, [], []
        rows = iter_table(job)
        header = next(rows, None)
        if header is None:
            raise ImportRefused("The file is empty.")
        self.headers = header[1]
        self.mapping = self.checked_mapping()
        self.column_names = {
            name: f"{column_letter(position)} ({header})"
            for position, header in enumerate(self.headers, 1)
            if (name := self.mapping.get(header, "-")) != "-"
        }
        # Per mapped column, in file order: where it is, what it fills, how it is read.
        self.readers = [
            (position - 1, name, self.spec.column(name).read, label)
            for position, header in enumerate(self.headers, 1)
            if (name := self.mapping.get(header, "-")) != "-"
            for label in [f"{column_letter(position)} ({header})"]
        ]
        self.seen = SeenKeys(job.key_field)
        with progress_channel(job) as publish, ExitStack() as writing:
            any_row = False
            for batch in batched(rows, BATCH_SIZE):
                any_row = True
                # Parsing needs no database: it overlaps the writes of the previous batch,
                # whose results (or error) are awaited only now.
                parsed = [self.parse(number, cells) for number, cells in batch]
                writing.close()
                self.handle(parsed, writing)
                publish()
                if self.progress:
                    self.progress(job)
            if not any_row:
                raise ImportRefused("The file has a header row but no data rows.")
        self.seen.close()
        job.rows_total = job.rows_done

    def checked_mapping(self) -> dict[str, str]:
        overrides = (self.job.column_map or {}).get("overrides", {})
        mapping, problems = column_map(self.spec, self.headers, overrides)
        mapped = set(mapping.values())
        if self.job.key_field not in mapped and self.job.mode != ImportJob.Mode.CREATE:
            problems.append(
                f"The key column {self.job.key_field!r} is missing: add it or map a column to it."
            )
        if self.job.mode != ImportJob.Mode.UPDATE:
            for required in self.spec.required_for_create:
                if required not in mapped:
                    problems.append(
                        f"Column {required!r} is required to create {self.spec.resource}."
                    )
        self.job.column_map = {"overrides": overrides, "columns": mapping}
        if problems:
            raise ImportRefused(problems)
        return mapping

    def handle(self, rows: list[Row], writing: ExitStack) -> None:
        self.references.resolve(rows, create=self.apply)
        self.seen.check(rows)
        Classifier(self.spec, self.job).classify(rows)
        # After the first error nothing more is written (it will be rolled back anyway), but
        # the rest of the file is still checked so every error is reported at once.
        if self.apply and not self.job.error_count and not any(row.errors for row in rows):
            writing.enter_context(pipeline())
            Writer(self.spec, self.job).write(rows)
        self.record(rows)

    def parse(self, number: int, cells: list[str]) -> Row:
        row = Row(number)
        width = len(self.headers)
        if len(cells) > width and any(cells[width:]):
            row.fail(column_letter(width + 1), "has a value but no header")
        values = row.values
        for index, name, read, label in self.readers:
            value = cells[index] if index < len(cells) else ""
            if not value:
                continue
            if NUL in value:
                row.fail(label, NUL_IN_CELL, value.replace(NUL, "\\u0000"))
                continue
            try:
                values[name] = read(value)
            except CellError as exc:
                row.fail(label, str(exc), value)
        return row

    def record(self, rows: list[Row]) -> None:
        job = self.job
        for row in rows:
            job.rows_done += 1
            if row.errors:
                row.outcome = "error"
                for error in row.errors:
                    error["column"] = self.column_names.get(error["column"], error["column"])
                job.error_count += len(row.errors)
                room = MAX_STORED_ERRORS - len(job.errors)
                job.errors.extend(row.errors[: max(room, 0)])
            elif row.outcome == "new":
                job.created_count += 1
            elif row.outcome == "updated":
                job.updated_count += 1
            else:
                job.skipped_count += 1
            if len(job.preview) < PREVIEW_ROWS:
                job.preview.append(preview_entry(row))


def preview_entry(row: Row) -> dict:
    return {
        "row": row.number,
        "outcome": row.outcome,
        "reason": row.reason or "; ".join(f"{e['column']}: {e['message']}" for e in row.errors),
        "changes": {name: [json_value(a), json_value(b)] for name, (a, b) in row.changes.items()},
    }


def json_value(value):
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return value


def batched(iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


class SeenKeys:
    """The key values of the rows handled so far, with the row each was first on, to report
    duplicates. Kept in a temporary table of the run's transaction rather than in memory: a
    file of millions of rows would otherwise hold millions of keys in the process."""

    TABLE = "import_seen_keys"

    def __init__(self, key: str):
        self.key = key
        query(
            f"CREATE TEMPORARY TABLE {self.TABLE} (key text PRIMARY KEY, row_number integer)"
            " ON COMMIT DROP",
            fetch=False,
        )

    def check(self, rows: list[Row]) -> None:
        first_in_batch: dict[str, int] = {}
        keyed = []
        for row in rows:
            value = row.values.get(self.key)
            if value is not None:
                keyed.append((row, value, str(value)))
                first_in_batch.setdefault(str(value), row.number)
        if not keyed:
            return
        # Both parts of the statement see the table as it was before it: the rows of
        # earlier batches.
        earlier = dict(
            query(
                f"WITH earlier AS (SELECT key, row_number FROM {self.TABLE}"  # noqa: S608
                "  WHERE key = ANY(%b::text[])),"
                f" added AS (INSERT INTO {self.TABLE}"
                "  SELECT * FROM unnest(%b::text[], %b::integer[]) ON CONFLICT DO NOTHING)"
                " SELECT key, row_number FROM earlier",
                [list(first_in_batch), list(first_in_batch), list(first_in_batch.values())],
            )
        )
        for row, value, text in keyed:
            first = earlier.get(text, first_in_batch[text])
            if first != row.number:
                row.fail(self.key, f"duplicate {self.key} {value!r}: already on row {first}", value)

    def close(self) -> None:
        query(f"DROP TABLE {self.TABLE}", fetch=False)


# --- References to other records, resolved per batch ------------------------------------------


class References:
    """Looks up owners, companies, contacts, pipelines, stages and deals named in the rows,
    caching across batches; companies named but unknown are created on apply."""

    def __init__(self, spec: ImportSpec):
        self.spec = spec
        self.cache: dict[str, dict] = defaultdict(dict)
        self.new_companies: dict[tuple[str, str], Company] = {}

    def resolve(self, rows: list[Row], *, create: bool) -> None:
        relations = {c.name: c.relation for c in self.spec.columns if c.relation}
        for name, relation in relations.items():
            if relation == "tags":
                continue
            wanted = {row.values[name] for row in rows if name in row.values}
            missing = wanted - self.cache[relation].keys()
            if missing:
                self.cache[relation].update(getattr(self, f"find_{relation}")(missing, rows))
            for row in rows:
                if name in row.values:
                    self.assign(row, name, relation, create)

    def assign(self, row: Row, name: str, relation: str, create: bool) -> None:
        value = row.values.pop(name)
        found = self.cache[relation].get(value)
        target = RELATION_FIELDS[relation]
        if isinstance(found, str):
            row.fail(name, found, value)
        elif found is not None:
            row.values[target] = found
        elif relation.startswith("company"):
            row.values[target] = self.company_to_create(relation, value, create)
        else:
            row.fail(name, f"{value!r} was not found", value)

    def company_to_create(self, relation: str, value: str, create: bool):
        key = (relation, value)
        if key not in self.new_companies:
            fields = (
                {"domain": value, "name": value} if relation.endswith("domain") else {"name": value}
            )
            self.new_companies[key] = Company(**fields)
        return self.new_companies[key]  # saved by the writer, which then knows its id

    def find_user(self, values, rows):
        users = get_user_model().objects.all()
        found = {}
        for user in users.filter(username__in=values):
            found[user.username] = user.pk
        for user in users.annotate(lower_email=Lower("email")).filter(
            lower_email__in=[v.lower() for v in values]
        ):
            for value in values:
                if value.lower() == user.email.lower():
                    found.setdefault(value, user.pk)
        return {
            value: found.get(value, f"no user {value!r} (username or e-mail)") for value in values
        }

    def find_company_by_name(self, values, rows):
        lowered = {v.lower(): v for v in values}
        matches = (
            Company.objects.annotate(lower_name=Lower("name"))
            .filter(lower_name__in=lowered)
            .values("lower_name")
            .annotate(first=Min("id"))
        )
        return {lowered[m["lower_name"]]: m["first"] for m in matches}

    def find_company_by_domain(self, values, rows):
        return dict(Company.objects.filter(domain__in=values).values_list("domain", "id"))

    def find_contact_by_email(self, values, rows):
        matches = Contact.objects.filter(email__in=values).values("email").annotate(first=Min("id"))
        found = {m["email"]: m["first"] for m in matches}
        return {v: found.get(v, f"no contact with e-mail {v!r}") for v in values}

    def find_pipeline(self, values, rows):
        found = dict(Pipeline.objects.filter(name__in=values).values_list("name", "id"))
        return {v: found.get(v, f"no pipeline named {v!r}") for v in values}

    def find_stage(self, values, rows):
        stages = defaultdict(list)
        for stage in Stage.objects.filter(name__in=values).select_related("pipeline"):
            stages[stage.name].append(stage)
        result = {}
        for value in values:
            if not stages[value]:
                result[value] = f"no stage named {value!r}"
            elif len(stages[value]) > 1:
                names = ", ".join(s.pipeline.name for s in stages[value])
                result[value] = f"stage {value!r} exists in several pipelines ({names})"
            else:
                result[value] = stages[value][0]
        return result

    def find_deal_by_name(self, values, rows):
        matches = Deal.objects.filter(name__in=values).values("name").annotate(first=Min("id"))
        found = {m["name"]: m["first"] for m in matches}
        return {v: found.get(v, f"no deal named {v!r}") for v in values}


RELATION_FIELDS = {
    "user": "owner_id",
    "company_by_name": "company_id",
    "company_by_domain": "company_id",
    "contact_by_email": "contact_id",
    "pipeline": "pipeline_id",
    "stage": "stage",
    "deal_by_name": "deal_id",
}


# --- New, updated or skipped ------------------------------------------------------------------


class Classifier:
    def __init__(self, spec: ImportSpec, job: ImportJob):
        self.spec, self.job = spec, job
        self.key = job.key_field

    def classify(self, rows: list[Row]) -> None:
        live = [row for row in rows if not row.errors]
        names = {name for row in live for name in row.values}
        keys = {row.values[self.key] for row in live if self.key in row.values}
        existing = self.existing(keys, names)
        suppressed = self.suppressed(live)
        tags = self.current_tags(existing) if "tags" in names else {}
        for row in live:
            self.classify_row(row, existing, suppressed, tags)

    def existing(self, keys: set, names: set[str]) -> dict:
        """Key value -> the record's current values (by attname), or a message when several
        records have that key."""
        if not keys:
            return {}
        model = self.spec.model
        # Only the columns the file touches: updates compare and write just those.
        loaded = {"id", attname(self.key)} | {attname(n) for n in names if n != "tags"}
        if "stage" in names:
            loaded |= set(STAGE_IMPLIED)
        columns = sorted(loaded)
        key_field = model._meta.get_field(self.key)
        found, counts = {}, defaultdict(int)
        for values in query(
            f"SELECT {', '.join(quote(model._meta.get_field(c).column) for c in columns)}"  # noqa: S608
            f" FROM {quote(model._meta.db_table)}"
            f" WHERE {quote(key_field.column)} = ANY(%b::{array_type(key_field)}[])",
            [list(keys)],
        ):
            record = dict(zip(columns, values, strict=True))
            value = record[attname(self.key)]
            counts[value] += 1
            found[value] = record
        for value, count in counts.items():
            if count > 1:
                found[value] = (
                    f"{count} existing {self.spec.resource} have {self.key} {value!r}; "
                    "use another key"
                )
        # Out of sight is the same as absent: any other answer would tell the person importing
        # that someone they may not see is known to another team. (A row creating a second
        # record of that person is then caught by the duplicate review.)
        for value in self.hidden_keys(found):
            del found[value]
        return found

    def hidden_keys(self, found: dict) -> list:
        """Keys of existing rows the person importing may not see: an import neither shows nor
        changes another team's records (imports run from a command have no person: no limit)."""
        user = self.job.created_by
        ids = {
            record["id"]: value for value, record in found.items() if not isinstance(record, str)
        }
        if user is None or not ids:
            return []
        visible = visible_to(user, self.spec.model.objects.filter(pk__in=ids))
        seen = set(visible.values_list("pk", flat=True))
        return [value for pk, value in ids.items() if pk not in seen]

    def suppressed(self, rows: list[Row]) -> set:
        if self.spec.model is not Contact:
            return set()
        return services.suppressed_identifiers(
            emails=[row.values.get("email", "") for row in rows],
            phones=[row.values.get("phone", "") for row in rows],
        )

    def current_tags(self, existing: dict) -> dict[int, set[str]]:
        ids = [record["id"] for record in existing.values() if not isinstance(record, str)]
        through = self.spec.model.tags.through
        owner = f"{self.spec.model._meta.model_name}_id"
        tags = defaultdict(set)
        for owner_id, name in query(
            f"SELECT l.{owner}, t.name FROM {through._meta.db_table} l"  # noqa: S608
            f" JOIN crm_tag t ON t.id = l.tag_id WHERE l.{owner} = ANY(%b::bigint[])",
            [ids],
        ):
            tags[owner_id].add(name)
        return tags

    def classify_row(self, row: Row, existing: dict, suppressed: set, tags: dict) -> None:
        mode, key = self.job.mode, self.key
        value = row.values.get(key)
        if value is None and mode != ImportJob.Mode.CREATE:
            row.fail(key, f"the key column {key!r} is empty")
            return
        record = existing.get(value) if value is not None else None
        if isinstance(record, str):
            row.fail(key, record, value)
        elif ("email", row.values.get("email")) in suppressed or (
            "phone",
            row.values.get("phone"),
        ) in suppressed:
            row.outcome, row.reason = "skipped", "erased on request (suppression list)"
        elif record is None and mode == ImportJob.Mode.UPDATE:
            row.outcome, row.reason = "skipped", f"no {self.spec.resource} with {key} {value!r}"
        elif record is not None and mode == ImportJob.Mode.CREATE:
            row.outcome, row.reason = "skipped", f"already exists (id {record['id']})"
        elif record is None:
            self.new(row)
        else:
            self.update(row, record, tags.get(record["id"], set()))

    def new(self, row: Row) -> None:
        if "id" in row.values:
            row.fail(
                "id",
                f"no {self.spec.resource} has id {row.values['id']}; leave the id "
                "empty to create a row (ids are given by cdphub)",
                row.values["id"],
            )
            return
        for required in self.spec.required_for_create:
            if required not in row.values and RELATION_FIELDS.get(required) not in row.values:
                row.fail(required, f"is required to create {self.spec.resource}")
        if not row.errors:
            row.outcome = "new"

    def update(self, row: Row, record: dict, current_tags: set[str]) -> None:
        row.pk, row.current = record["id"], record
        for name, value in row.values.items():
            if name == "tags":
                if set(value) - current_tags:
                    row.changes["tags"] = [sorted(current_tags), sorted(current_tags | set(value))]
                continue
            old = record[attname(name)]
            new = value.pk if isinstance(value, Stage) else value
            if isinstance(new, Company):
                new = "(new company)"
            if old != new:
                row.changes[name] = [old, new]
        row.outcome = "updated" if row.changes else "skipped"
        row.reason = "" if row.changes else "no changes"


# --- Writing ------------------------------------------------------------------------------------


STAGE_IMPLIED = ("pipeline_id", "status", "closed_at", "probability")


class Writer:
    def __init__(self, spec: ImportSpec, job: ImportJob):
        self.spec, self.job, self.model = spec, job, spec.model
        self.label = spec.model._meta.label_lower

    def write(self, rows: list[Row]) -> None:
        self.create_companies(rows)
        new = [row for row in rows if row.outcome == "new"]
        updated = [row for row in rows if row.outcome == "updated"]
        self.create(new)
        self.update(updated)
        self.add_tags(new + updated)
        created = ImportChange.Action.CREATED
        change_log(self.job, self.label, created, [r.pk for r in new], [r.number for r in new])
        change_log(
            self.job,
            self.label,
            ImportChange.Action.UPDATED,
            [row.pk for row in updated],
            [row.number for row in updated],
            befores=[row.before for row in updated],
        )

    def create_companies(self, rows: list[Row]) -> None:
        pending = {
            id(company): company
            for row in rows
            if row.outcome in ("new", "updated")
            for company in [row.values.get("company_id")]
            if isinstance(company, Company) and company.pk is None
        }
        if pending:
            ids = objects_insert(Company, list(pending.values()))
            change_log(self.job, "crm.company", ImportChange.Action.CREATED, ids)
        for row in rows:
            if isinstance(row.values.get("company_id"), Company):
                row.values["company_id"] = row.values["company_id"].pk
                if "company_id" in row.changes:
                    row.changes["company_id"][1] = row.values["company_id"]

    def fields_of(self, row: Row) -> dict:
        """The row's values by attname, with what a deal's stage implies."""
        values = {attname(k): v for k, v in row.values.items() if k not in ("tags", "id")}
        if isinstance(values.get("stage_id"), Stage):
            stage = values["stage_id"]
            implied = services.deal_stage_fields(stage)
            values["stage_id"] = stage.pk
            values.setdefault("pipeline_id", stage.pipeline_id)
            values["status"], values["closed_at"] = implied["status"], implied["closed_at"]
            if implied["status"] != Deal.Status.OPEN or "probability" not in values:
                values["probability"] = implied["probability"]
        return values

    def create(self, rows: list[Row]) -> None:
        ids = values_insert(self.model, [self.fields_of(row) for row in rows])
        for row, pk in zip(rows, ids, strict=True):
            row.pk = pk

    def update(self, rows: list[Row]) -> None:
        """Each row writes the fields that changed (and what a changed stage implies); their
        previous values are kept for revert."""
        written = []
        for row in rows:
            changed = {attname(name) for name in row.changes}
            if "stage_id" in changed:
                changed.update(STAGE_IMPLIED)
            fields = {k: v for k, v in self.fields_of(row).items() if k in changed}
            row.before = {name: json_value(row.current[name]) for name in fields}
            if fields:
                written.append((row.pk, fields))
        values_update(self.model, written)

    def add_tags(self, rows: list[Row]) -> None:
        """Links rows to their tags (creating the tags that do not exist); the links and tags
        really added are logged, so revert removes exactly those."""
        wanted = {name for row in rows for name in row.values.get("tags", ())}
        if not wanted:
            return
        ids = self.tag_ids(wanted)
        through = self.model.tags.through
        owner = f"{self.model._meta.model_name}_id"
        pairs = [(row.pk, ids[name]) for row in rows for name in row.values.get("tags", ())]
        added = query(
            f"INSERT INTO {quote(through._meta.db_table)} ({owner}, tag_id)"  # noqa: S608
            " SELECT * FROM unnest(%b::bigint[], %b::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING id",
            [[pk for pk, _ in pairs], [tag for _, tag in pairs]],
        )
        label = through._meta.label_lower
        change_log(self.job, label, ImportChange.Action.CREATED, [pk for (pk,) in added])

    def tag_ids(self, names: set[str]) -> dict[str, int]:
        find = "SELECT name, id FROM crm_tag WHERE name = ANY(%b::text[])"
        ids = dict(query(find, [sorted(names)]))
        missing = sorted(names - ids.keys())
        if missing:
            created = objects_insert(Tag, [Tag(name=name) for name in missing], skip_conflicts=True)
            change_log(self.job, "crm.tag", ImportChange.Action.CREATED, created)
            ids.update(query(find, [missing]))  # with those another import created meanwhile
        return ids


def attname(name: str) -> str:
    return "stage_id" if name == "stage" else name


def change_log(
    job: ImportJob,
    label: str,
    action: str,
    ids: list[int],
    row_numbers: list[int] | None = None,
    *,
    befores: list | None = None,
) -> None:
    """One ``ImportChange`` row for what a batch did to one model (nothing when it did
    nothing), written with binary arrays: it is on every batch's path."""
    if not ids:
        return
    query(
        "INSERT INTO crm_importchange (job_id, model, action, object_ids, row_numbers, befores)"
        " VALUES (%b, %b, %b, %b::bigint[], %b::integer[], %b::jsonb)",
        [
            job.pk,
            label,
            action,
            ids,
            row_numbers or [],
            None if befores is None else Jsonb(befores),
        ],
        fetch=False,
    )


# --- Linking imported contacts to CDP profiles -------------------------------------------------


def import_job_link_profiles(*, job: ImportJob, progress: Progress | None = None) -> int:
    """Link the contacts an import created or updated to their CDP profiles (creating profiles
    and identities, copying traits), batch by batch in the background: identity work is
    heavier than the import itself, so it does not hold the import's transaction open. What it
    adds to existing profiles and contacts is logged with the import, for revert. Safe to run
    again after an interruption: linking is idempotent."""
    if job.resource != ImportJob.Resource.CONTACTS or job.profiles_linked_at:
        return 0
    linked = 0
    # The contacts of the file's rows; the changes logged by linking itself have no rows.
    sources = ImportChange.objects.filter(job=job, model="crm.contact").exclude(row_numbers=[])
    for change_id, action in sources.values_list("pk", "action"):
        object_ids = ImportChange.objects.values_list("object_ids", flat=True).get(pk=change_id)
        for ids in batched(object_ids, LINK_BATCH_SIZE):
            with transaction.atomic():
                contacts = list(Contact.objects.filter(pk__in=ids).select_related(None))
                links = services.contact_profiles_link(contacts=contacts)
                created = action == ImportChange.Action.CREATED
                profile_links_log(job, links, created_contacts=created)
            linked += len(contacts)
            if progress:
                progress(job)
    job.profiles_linked_at = timezone.now()
    job.save(update_fields=["profiles_linked_at"])
    return linked


def profile_links_log(
    job: ImportJob, links: services.ProfileLinks, *, created_contacts: bool
) -> None:
    created = ImportChange.Action.CREATED
    change_log(job, "profiles.profile", created, links.profiles)
    change_log(job, "profiles.identity", created, links.identities)
    change_log(
        job,
        "profiles.profile",
        ImportChange.Action.UPDATED,
        list(links.traits),
        befores=[{"traits": before} for before in links.traits.values()],
    )
    if not created_contacts:  # contacts the import created go away whole on revert
        change_log(
            job,
            "crm.contact",
            ImportChange.Action.UPDATED,
            list(links.relinked),
            befores=[{"profile_id": old} for old in links.relinked.values()],
        )


# --- Revert -------------------------------------------------------------------------------------


def created_batches(changes, label: str) -> Iterator[list[int]]:
    """The ids of the rows of one model the import created, a logged batch at a time."""
    created = changes.filter(model=label, action=ImportChange.Action.CREATED)
    for change_id in created.values_list("pk", flat=True):
        yield ImportChange.objects.values_list("object_ids", flat=True).get(pk=change_id)


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


@transaction.atomic
def import_job_revert(*, job: ImportJob, actor=None) -> dict[str, int]:
    """Undo an applied import: created rows deleted (profiles and tags only when nothing else
    uses them), updated rows given their previous values back, the tags it added to existing
    records removed, and what profile linking did to existing profiles and contacts undone
    (identities, traits, links). Changes made to those rows after the import are overwritten
    by the restore. CRM records out of the ``actor``'s sight (moved to another sales team
    since) are left as they are, and counted."""
    import_job_check_actor(job=job, actor=actor)
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if job.status != ImportJob.Status.APPLIED:
        raise ImportRefused(f"Only applied imports can be reverted; this one is {job.status}.")

    def in_sight(queryset: QuerySet) -> QuerySet:
        return queryset if actor is None else visible_to(actor, queryset)

    changes = ImportChange.objects.filter(job=job)
    updated = changes.filter(action=ImportChange.Action.UPDATED)
    restored, out_of_sight = revert_updates(updated.filter(model__in=SPECS_BY_LABEL), in_sight)
    profile_traits_restore(updated.filter(model="profiles.profile"))
    for model in (Contact, Company):
        through = model.tags.through
        for ids in created_batches(changes, through._meta.label_lower):
            through.objects.filter(pk__in=ids).delete()
    deleted = 0
    for label in ("crm.activity", "crm.deal", "crm.contact", "crm.company"):
        model = SPECS_BY_LABEL[label]
        for ids in created_batches(changes, label):
            ids = list(in_sight(model.objects.filter(pk__in=ids)).values_list("pk", flat=True))
            if label == "crm.contact":  # gone with the contact, even from a profile that stays
                Identity.objects.filter(
                    kind=Identity.Kind.CRM_CONTACT, value__in=[str(pk) for pk in ids]
                ).delete()
            deleted += model.objects.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
    kept = created_profiles_delete(changes)
    for ids in created_batches(changes, "profiles.identity"):
        Identity.objects.filter(pk__in=ids).exclude(profile_id__in=kept).delete()
    for ids in created_batches(changes, "crm.tag"):
        Tag.objects.filter(pk__in=ids, contacts=None, companies=None).delete()
    job.status, job.reverted_at = ImportJob.Status.REVERTED, timezone.now()
    job.message = f"Reverted: {deleted} created row(s) deleted, {restored} row(s) restored."
    if out_of_sight:
        job.message += f" {out_of_sight} record(s) out of your sight were left as they are."
    job.save()
    return {"deleted": deleted, "restored": restored, "out_of_sight": out_of_sight}


def created_profiles_delete(changes) -> set[int]:
    """Delete the profiles the import created that nothing else uses; returns those kept
    (events arrived or a contact links to them since): they stay whole, identities too."""
    kept = set()
    for ids in created_batches(changes, "profiles.profile"):
        profiles = Profile.objects.filter(pk__in=ids)
        used = profiles.filter(
            Exists(Event.objects.filter(profile=OuterRef("pk")))
            | Exists(Contact.objects.filter(profile=OuterRef("pk")))
        )
        kept.update(used.values_list("pk", flat=True))
        profiles.exclude(pk__in=kept).delete()
    return kept


def profile_traits_restore(changes) -> None:
    """The traits linking replaced get their previous values back and those it added go, the
    latest batch first: a profile two batches changed ends as it was before the first."""
    for change_id in changes.order_by("-pk").values_list("pk", flat=True):
        change = ImportChange.objects.get(pk=change_id)
        query(
            "UPDATE profiles_profile AS p SET traits ="
            " (p.traits - ARRAY(SELECT jsonb_array_elements_text(v.before -> 'added')))"
            " || (v.before -> 'replaced'), updated_at = now()"
            " FROM unnest(%b::bigint[], %b::jsonb[]) AS v(id, before) WHERE p.id = v.id",
            [change.object_ids, [Jsonb(before["traits"]) for before in change.befores]],
            fetch=False,
        )


def revert_updates(changes, in_sight) -> tuple[int, int]:
    """Previous values back, a logged batch at a time; returns how many rows of the file
    were restored (linking's own changes to those rows are restored too, not counted) and how
    many were left because they are out of sight (``in_sight`` filters a queryset)."""
    restored = out_of_sight = 0
    for change_id in changes.values_list("pk", flat=True):
        change = ImportChange.objects.get(pk=change_id)
        model = SPECS_BY_LABEL[change.model]
        existing = model.objects.filter(pk__in=change.object_ids)
        objects = in_sight(existing).in_bulk()
        if change.row_numbers:
            out_of_sight += existing.count() - len(objects)
        touched, names = [], set()
        for pk, before in zip(change.object_ids, change.befores or [], strict=False):
            obj = objects.get(pk)
            if obj is None:
                continue  # deleted since the import, or out of sight: nothing to restore
            for name, value in (before or {}).items():
                if name == "tags":  # logged by imports applied before tag links were logged
                    obj.tags.set(Tag.objects.filter(name__in=value))
                    continue
                setattr(obj, name, model._meta.get_field(name).to_python(value))
                names.add(name)
            touched.append(obj)
        if names:
            objects_update(model, touched, sorted(names))
        restored += len(touched) if change.row_numbers else 0
    return restored, out_of_sight


SPECS_BY_LABEL = {spec.model._meta.label_lower: spec.model for spec in SPECS.values()}
