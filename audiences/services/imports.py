"""Imports of DMP data: the taxonomy, and provider segment files as trait hits.

One module for both importers: they share reading a CSV file row by row with errors per row."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO

from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audiences.models import (
    Category,
    DataProvider,
    JobStatus,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)
from cdphub.errors import DomainError
from cdphub.sql import execute, query
from profiles.resolution.normalize import InvalidIdentifier, normalize_opaque_id

logger = logging.getLogger(__name__)

MAX_STORED_ERRORS = 1000


@dataclass(frozen=True)
class RowError:
    line: int
    error: str

    def as_dict(self) -> dict:
        return {"line": self.line, "error": self.error}

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


# Key under which a row carries the complaint that it has more fields than the header.
EXTRA_FIELDS = "__extra__"


class CsvUnreadable(ValueError):
    """The file itself cannot be read on from this line (not UTF-8, broken quoting)."""

    def __init__(self, line: int, reason: str):
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


def csv_rows(file: IO) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV with a header; line 1 is the header. Accepts text or
    binary files (UTF-8, with or without BOM). Raises ``CsvUnreadable`` where reading stops."""
    reader = csv.DictReader(utf8_lines(file), restkey=EXTRA_FIELDS)
    try:
        for row in reader:
            extra = row.pop(EXTRA_FIELDS, None)
            cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            if extra:
                cleaned[EXTRA_FIELDS] = f"{len(extra)} more field(s) than the header"
            yield reader.line_num, cleaned
    except csv.Error as error:
        raise CsvUnreadable(reader.line_num, f"the CSV is malformed ({error})") from None


def utf8_lines(file: IO) -> Iterator[str]:
    """Lines decoded one by one, so a bad byte is reported on its own line and every line
    before it is still read."""
    for number, line in enumerate(file, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise CsvUnreadable(number, "the file is not UTF-8 text") from None
        yield line


def csv_header(file: IO) -> list[str]:
    file.seek(0)
    first = file.readline()
    file.seek(0)
    if isinstance(first, bytes):
        first = first.decode("utf-8-sig", errors="replace")
    return [name.strip().lower() for name in next(csv.reader([first]), [])]


# --- taxonomy ------------------------------------------------------------------------------

TAXONOMY_COLUMNS = ("code", "name", "kind", "parent_code", "tier")


class TaxonomyImportError(ValueError):
    def __init__(self, errors: list[RowError]):
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(f"taxonomy file refused, nothing imported: {shown}{more}")


@dataclass
class TaxonomyImportResult:
    created: int = 0
    updated: int = 0


@transaction.atomic
def taxonomy_import(*, file: IO) -> TaxonomyImportResult:
    """Create or update categories by code from a CSV (code, name, kind, parent_code, tier).

    All or nothing: a taxonomy is a tree, and half of one would leave children without their
    parents, so any bad row refuses the whole file with every error listed by line."""
    missing = [c for c in ("code", "name", "kind") if c not in csv_header(file)]
    if missing:
        raise TaxonomyImportError([RowError(1, f"missing column(s): {', '.join(missing)}")])
    try:
        rows, errors = taxonomy_rows_parse(file)
    except CsvUnreadable as error:
        raise TaxonomyImportError([RowError(error.line, error.reason)]) from None
    existing = {c.code: c for c in Category.objects.select_for_update()}
    planned = {code: (row["tier"], row["kind"]) for code, (_, row) in rows.items()}
    for code, (line, row) in rows.items():
        parent = row["parent_code"]
        if not parent:
            continue
        if parent == code:
            errors.append(RowError(line, f"category {code} cannot be its own parent"))
            continue
        tier_kind = planned.get(parent) or (
            (existing[parent].tier, existing[parent].kind) if parent in existing else None
        )
        if tier_kind is None:
            errors.append(
                RowError(line, f"parent_code {parent!r} is neither in the file nor known")
            )
        elif tier_kind[0] + 1 != row["tier"]:
            errors.append(
                RowError(line, f"tier {row['tier']} but parent {parent} is tier {tier_kind[0]}")
            )
        elif tier_kind[1] != row["kind"]:
            errors.append(
                RowError(line, f"kind {row['kind']} but parent {parent} is {tier_kind[1]}")
            )
    if errors:
        raise TaxonomyImportError(sorted(errors, key=lambda e: e.line))
    return taxonomy_rows_save(rows, existing)


def taxonomy_rows_parse(file: IO) -> tuple[dict[str, tuple[int, dict]], list[RowError]]:
    rows: dict[str, tuple[int, dict]] = {}
    errors: list[RowError] = []
    kinds = set(Category.Kind.values)
    for line, raw in csv_rows(file):
        code, name, kind = raw.get("code", ""), raw.get("name", ""), raw.get("kind", "").lower()
        parent = raw.get("parent_code", "")
        problems = [raw[EXTRA_FIELDS]] if EXTRA_FIELDS in raw else []
        if not code:
            problems.append("code is empty")
        elif len(code) > 64:
            problems.append("code is longer than 64 characters")
        if not name:
            problems.append("name is empty")
        if kind not in kinds:
            problems.append(f"kind {kind!r} is not one of {', '.join(sorted(kinds))}")
        tier_text = raw.get("tier", "") or ("1" if not parent else "")
        if not tier_text.isdigit() or int(tier_text) < 1:
            problems.append(f"tier {tier_text!r} is not a whole number of at least 1")
        if code in rows:
            problems.append(f"code {code} is already on line {rows[code][0]}")
        if problems:
            errors.append(RowError(line, "; ".join(problems)))
            continue
        rows[code] = (
            line,
            {"name": name, "kind": kind, "parent_code": parent, "tier": int(tier_text)},
        )
    return rows, errors


def taxonomy_rows_save(rows, existing) -> TaxonomyImportResult:
    result = TaxonomyImportResult()
    # Parents first: by tier.
    for code, (_, row) in sorted(rows.items(), key=lambda item: item[1][1]["tier"]):
        parent = existing.get(row["parent_code"]) if row["parent_code"] else None
        category = existing.get(code) or Category(code=code)
        result.updated += category.pk is not None
        result.created += category.pk is None
        category.name, category.kind, category.tier = row["name"], row["kind"], row["tier"]
        category.parent = parent
        category.save()
        existing[code] = category
    return result


# --- provider segment files ----------------------------------------------------------------


class ProviderFileError(DomainError):
    field = "file"


@dataclass(frozen=True)
class Observation:
    key_kind: str
    key: str
    category_id: int
    observed_at: datetime


@dataclass
class ImportProgress:
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0

    def error_add(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(RowError(line, message))


def provider_file_header_check(file: IO) -> None:
    header = csv_header(file)
    if "cookie_id" not in header and "device_id" not in header:
        raise ProviderFileError("the header needs a cookie_id or device_id column")
    missing = [name for name in ("category", "timestamp") if name not in header]
    if missing:
        raise ProviderFileError(f"the header is missing: {', '.join(missing)}")


@transaction.atomic
def provider_file_import_create(
    *, provider: DataProvider, file: File, created_by=None
) -> ProviderFileImport:
    """Store the file for its import, which the caller queues
    (``audiences.tasks.provider_file_import_later``). The header is checked now, so a wrong
    file is refused at upload rather than failing later in the background."""
    provider_file_header_check(file)
    job = ProviderFileImport(provider=provider, created_by=created_by)
    job.file.save(getattr(file, "name", None) or "segment.csv", file, save=False)
    job.save()
    return job


def provider_file_import_run(*, job_id: int, batch_size: int = 5000) -> ProviderFileImport | None:
    """Import a queued provider file in batches, each committed on its own so progress shows
    and a crash keeps what was done; running it again re-applies the same upserts.

    Good rows are kept and bad rows listed with their line numbers: a provider file is a feed
    of independent observations, and one malformed line must not drop a million good ones."""
    claimed = ProviderFileImport.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None  # already running, finished, or deleted
    job = ProviderFileImport.objects.select_related("provider").get(pk=job_id)
    try:
        provider_file_rows_import(job, batch_size)
    except Exception as error:
        logger.exception("provider file import %s failed", job_id)
        job.status, job.message, job.finished_at = JobStatus.FAILED, str(error), timezone.now()
        job.save(update_fields=["status", "message", "finished_at"])
        return job
    return job


def provider_file_rows_import(job: ProviderFileImport, batch_size: int) -> None:
    with job.file.open("rb") as file:
        job.total_rows = max(0, sum(1 for _ in file) - 1)
    job.save(update_fields=["total_rows"])
    categories = dict(Category.objects.values_list("code", "pk"))
    progress = ImportProgress()
    now = timezone.now()
    batch: list[Observation] = []
    with job.file.open("rb") as file:
        for line, row in csv_rows(file):
            observation = observation_parse(row, line, categories, job.provider, now, progress)
            if observation is not None:
                batch.append(observation)
            job.processed_rows += 1
            if len(batch) >= batch_size or job.processed_rows % batch_size == 0:
                progress.imported += trait_hits_upsert(provider=job.provider, observations=batch)
                batch = []
                job_progress_save(job, progress)
    progress.imported += trait_hits_upsert(provider=job.provider, observations=batch)
    job.status, job.finished_at = JobStatus.DONE, timezone.now()
    job_progress_save(job, progress, final=True)


def job_progress_save(
    job: ProviderFileImport, progress: ImportProgress, final: bool = False
) -> None:
    job.imported_rows = progress.imported
    job.error_rows = progress.error_count
    job.errors = [e.as_dict() for e in progress.errors]
    fields = ["processed_rows", "imported_rows", "error_rows", "errors"]
    job.save(update_fields=fields + (["status", "finished_at"] if final else []))


def observation_parse(row, line, categories, provider, now, progress) -> Observation | None:
    key_kind, raw_key = (
        ("cookie", row.get("cookie_id"))
        if row.get("cookie_id")
        else ("device", row.get("device_id"))
    )
    problems = [row[EXTRA_FIELDS]] if EXTRA_FIELDS in row else []
    try:
        key = normalize_opaque_id(raw_key, label=f"{key_kind} id")
    except InvalidIdentifier as error:
        problems.append(str(error))
    category_id = categories.get(row.get("category", ""))
    if category_id is None:
        problems.append(f"category {row.get('category', '')!r} is not in the taxonomy")
    observed_at = timestamp_parse(row.get("timestamp", ""))
    if observed_at is None:
        problems.append(f"timestamp {row.get('timestamp', '')!r} is not ISO 8601 or Unix seconds")
    elif observed_at > now + timedelta(days=1):
        problems.append(f"timestamp {row['timestamp']} is in the future")
    elif observed_at + timedelta(days=provider.retention_days) <= now:
        problems.append(
            f"timestamp {row['timestamp']} is older than {provider}'s retention of "
            f"{provider.retention_days} days: it would expire on arrival"
        )
    if problems:
        progress.error_add(line, "; ".join(problems))
        return None
    return Observation(key_kind, key, category_id, observed_at)


def timestamp_parse(text: str) -> datetime | None:
    text = text.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    try:
        parsed = parse_datetime(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


VISITOR = Visitor._meta.db_table
VISITOR_UPSERT = f"""
INSERT INTO {VISITOR}
    (key_kind, key, first_seen_at, last_seen_at, expires_at, country, device_type, browser,
     created_at)
SELECT kind, key, first_seen, last_seen, last_seen + %b, '', '', '', now()
FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[])
    AS v(kind, key, first_seen, last_seen)
ON CONFLICT (key_kind, key) DO UPDATE SET
    first_seen_at = LEAST({VISITOR}.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST({VISITOR}.last_seen_at, EXCLUDED.last_seen_at),
    expires_at = GREATEST({VISITOR}.expires_at, EXCLUDED.expires_at)
RETURNING id, key_kind, key
"""  # noqa: S608 - table names from model metadata; values are parameters

HIT = VisitorTraitHit._meta.db_table
HIT_UPSERT = f"""
INSERT INTO {HIT}
    (visitor_id, category_id, provider_id, observed_at, expires_at)
SELECT visitor, category, %b::bigint, observed, observed + %b
FROM unnest(%b::bigint[], %b::bigint[], %b::timestamptz[])
    AS h(visitor, category, observed)
ON CONFLICT (visitor_id, category_id, provider_id) DO UPDATE SET
    observed_at = GREATEST({HIT}.observed_at, EXCLUDED.observed_at),
    expires_at = GREATEST({HIT}.expires_at, EXCLUDED.expires_at)
"""  # noqa: S608 - table names from model metadata; values are parameters


@transaction.atomic
def trait_hits_upsert(*, provider: DataProvider, observations: list[Observation]) -> int:
    """Record observations as visitors and trait hits with a sliding TTL: ``expires_at`` is
    ``observed_at + provider.retention_days``, and seeing a visitor again extends it (never
    shortens it). Returns the number of observations applied."""
    if not observations:
        return 0
    ttl = timedelta(days=provider.retention_days)
    seen: dict[tuple[str, str], list[datetime]] = {}
    for o in observations:
        first_last = seen.setdefault((o.key_kind, o.key), [o.observed_at, o.observed_at])
        first_last[0], first_last[1] = (
            min(first_last[0], o.observed_at),
            max(first_last[1], o.observed_at),
        )
    # Sorted keys: concurrent imports lock visitor rows in the same order, so never deadlock.
    keys = sorted(seen)
    rows = query(
        VISITOR_UPSERT,
        [
            ttl,
            [k for k, _ in keys],
            [key for _, key in keys],
            [seen[k][0] for k in keys],
            [seen[k][1] for k in keys],
        ],
    )
    visitor_ids = {(kind, key): pk for pk, kind, key in rows}
    latest: dict[tuple[int, int], datetime] = {}
    for o in observations:
        hit = (visitor_ids[(o.key_kind, o.key)], o.category_id)
        latest[hit] = max(latest.get(hit, o.observed_at), o.observed_at)
    hits = sorted(latest)
    execute(
        HIT_UPSERT,
        [
            provider.pk,
            ttl,
            [v for v, _ in hits],
            [c for _, c in hits],
            [latest[h] for h in hits],
        ],
    )
    return len(observations)
