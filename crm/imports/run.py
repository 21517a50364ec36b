"""One pass over the stored file, batch by batch (``ImportRun``): the header row mapped to fields,
each row's cells parsed, then per batch the references resolved (``crm.imports.references``),
duplicate keys found (``SeenKeys``), rows classified (``crm.imports.classify``) and, when
applying and no row so far has failed, written (``crm.imports.write``). Counts, the error list
and the preview are kept on the job; progress is published on a connection of its own.

Memory stays bounded whatever the file's size: rows are streamed a batch at a time, and the
keys already seen are kept in a temporary table, not in the process."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from django.db import DEFAULT_DB_ALIAS, connections

from cdphub.bulk import quote
from cdphub.sql import pipeline, query
from crm.importfiles import (
    REJECTED_REASON_COLUMN,
    ImportRefused,
    column_letter,
    column_map,
    iter_table,
)
from crm.imports.classify import Classifier
from crm.imports.references import References
from crm.imports.rows import Progress, Row, batched, json_value
from crm.imports.write import Writer
from crm.models import ImportJob
from crm.resources import (
    SPECS,
    CellError,
    ImportSpec,
    Warned,
    header_token,
    spec_with_custom_fields,
)

BATCH_SIZE = 2000
MAX_STORED_ERRORS = 10_000
PREVIEW_ROWS = 100


# PostgreSQL text and JSONB cannot hold a NUL character: such a cell is a row error, found
# while checking, so it never reaches a write (nor the job's error list, which is JSONB).
NUL = "\x00"
NUL_IN_CELL = "contains a NUL character (\\u0000), which cannot be stored: remove it"


@contextmanager
def progress_channel(job: ImportJob):
    """Progress goes through its own connection, so the admin sees it while the import's
    transaction is still open."""
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:

        def publish() -> None:
            # A connection of its own, not cdphub.sql's: visible outside the import's transaction.
            with side.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {quote(ImportJob._meta.db_table)}"  # noqa: S608
                    " SET rows_done = %s, rows_total = %s, error_count = %s"
                    " WHERE id = %s",
                    [job.rows_done, job.rows_total, job.error_count, job.pk],
                )

        yield publish
    finally:
        side.close()


class ImportRun:
    """With ``valid_rows_only`` an apply writes every valid row, and keeps the reasons of the
    others (``rejected``, by row number) for the rejected rows file; otherwise nothing is
    written after the first error (the whole apply is rolled back)."""

    def __init__(
        self,
        job: ImportJob,
        *,
        apply: bool,
        progress: Progress | None,
        valid_rows_only: bool = False,
    ):
        self.job, self.apply, self.progress = job, apply, progress
        self.valid_rows_only = valid_rows_only
        self.rejected: dict[int, str] = {}
        self.spec: ImportSpec = spec_with_custom_fields(SPECS[job.resource])
        self.references = References(self.spec)
        self.new_owners = NewRecordsOwners(job)

    def execute(self) -> None:
        job = self.job
        job.rows_done = job.created_count = job.updated_count = job.skipped_count = 0
        job.error_count, job.errors, job.preview = 0, [], []
        job.warning_count, job.warnings = 0, []
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
        skip_unknown = bool((self.job.column_map or {}).get("skip_unknown"))
        mapping, problems = column_map(
            self.spec, self.headers, overrides, skip_unknown=skip_unknown
        )
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
        if skip_unknown:
            self.job.column_map["skip_unknown"] = True
            self.job.column_map["ignored"] = [
                header
                for header, field in mapping.items()
                if field == "-"
                and header not in overrides
                and header_token(header) != header_token(REJECTED_REASON_COLUMN)
            ]
        if problems:
            raise ImportRefused(problems)
        return mapping

    def handle(self, rows: list[Row], writing: ExitStack) -> None:
        self.references.resolve(rows, create=self.apply)
        self.seen.check(rows)
        Classifier(self.spec, self.job).classify(rows)
        self.new_owners.assign(rows)
        # After the first error nothing more is written (it will be rolled back anyway), but
        # the rest of the file is still checked so every error is reported at once; with
        # valid rows only, the valid rows of every batch are written.
        valid = [row for row in rows if not row.errors]
        writes = self.valid_rows_only or (not self.job.error_count and len(valid) == len(rows))
        if self.apply and valid and writes:
            writing.enter_context(pipeline())
            Writer(self.spec, self.job).write(valid)
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
            if isinstance(values.get(name), Warned):
                row.warn(label, values[name].message, value)
                values[name] = values[name].value
        return row

    def record(self, rows: list[Row]) -> None:
        job = self.job
        for row in rows:
            job.rows_done += 1
            if row.errors:
                self.record_errors(row)
            else:
                self.record_warnings(row)
                if row.outcome == "new":
                    job.created_count += 1
                elif row.outcome == "updated":
                    job.updated_count += 1
                else:
                    job.skipped_count += 1
            if len(job.preview) < PREVIEW_ROWS:
                job.preview.append(preview_entry(row))

    def record_errors(self, row: Row) -> None:
        job = self.job
        row.outcome = "error"
        for error in row.errors:
            error["column"] = self.column_names.get(error["column"], error["column"])
        job.error_count += len(row.errors)
        self.rejected[row.number] = "; ".join(
            f"{e['column']}: {e['message']}" if e["column"] else e["message"] for e in row.errors
        )
        room = MAX_STORED_ERRORS - len(job.errors)
        job.errors.extend(row.errors[: max(room, 0)])

    def record_warnings(self, row: Row) -> None:
        """Values kept with something to point out (a phone number in no assigned range)."""
        job = self.job
        for warning in row.warnings:
            warning["column"] = self.column_names.get(warning["column"], warning["column"])
        job.warning_count += len(row.warnings)
        room = MAX_STORED_ERRORS - len(job.warnings)
        job.warnings.extend(row.warnings[: max(room, 0)])


def preview_entry(row: Row) -> dict:
    return {
        "row": row.number,
        "outcome": row.outcome,
        "reason": row.reason or "; ".join(f"{e['column']}: {e['message']}" for e in row.errors),
        "changes": {name: [json_value(a), json_value(b)] for name, (a, b) in row.changes.items()},
    }


class NewRecordsOwners:
    """The owner of each record the import creates without an owner column value: the job's
    chosen owner, or its team's members in turn (round-robin, in a fixed order, across the
    whole file)."""

    def __init__(self, job: ImportJob):
        if job.new_records_owner_id:
            self.owners = [job.new_records_owner_id]
        elif job.new_records_team_id:
            self.owners = list(
                job.new_records_team.members.order_by("pk").values_list("pk", flat=True)
            )
        else:
            self.owners = []
        self.turn = 0

    def assign(self, rows: list[Row]) -> None:
        if not self.owners:
            return
        for row in rows:
            if row.outcome == "new" and not row.errors and row.values.get("owner_id") is None:
                owner = self.owners[self.turn % len(self.owners)]
                self.turn += 1
                row.values["owner_id"] = owner
                row.changes["owner_id"] = [None, owner]


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
