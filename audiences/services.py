"""Writes of the DMP: taxonomy and provider file imports, exports to ad platforms, retention."""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO

from django.conf import settings
from django.core.files import File
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audiences import hashing
from audiences.models import (
    Audience,
    AudienceExport,
    AudienceMembership,
    Category,
    DataProvider,
    JobStatus,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)
from audiences.selectors import profiles_allowed_for_advertising, profiles_allowed_for_linking
from profiles.models import Identity, Profile
from profiles.normalize import InvalidIdentifier, normalize_opaque_id

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


def csv_rows(file: IO) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV with a header; line 1 is the header. Accepts text or
    binary files (UTF-8, with or without BOM)."""
    text = file if isinstance(file.read(0), str) else io.TextIOWrapper(file, encoding="utf-8-sig")
    reader = csv.DictReader(text)
    for row in reader:
        yield (
            reader.line_num,
            {(key or "").strip().lower(): (value or "").strip() for key, value in row.items()},
        )


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
    rows, errors = taxonomy_rows_parse(file)
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
        problems = []
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


class ProviderFileError(ValueError):
    pass


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
    """Store the file and queue its import. The header is checked now, so a wrong file is
    refused at upload rather than failing later in the background."""
    provider_file_header_check(file)
    job = ProviderFileImport(provider=provider, created_by=created_by)
    job.file.save(getattr(file, "name", None) or "segment.csv", file, save=False)
    job.save()
    from audiences.tasks import import_provider_file_task

    transaction.on_commit(lambda: import_provider_file_task.delay(job.pk))
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
    problems = []
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


VISITOR_UPSERT = """
INSERT INTO audiences_visitor
    (key_kind, key, first_seen_at, last_seen_at, expires_at, country, device_type, browser,
     created_at)
SELECT kind, key, first_seen, last_seen, last_seen + %(ttl)s, '', '', '', now()
FROM unnest(%(kinds)s::text[], %(keys)s::text[], %(first)s::timestamptz[], %(last)s::timestamptz[])
    AS v(kind, key, first_seen, last_seen)
ON CONFLICT (key_kind, key) DO UPDATE SET
    first_seen_at = LEAST(audiences_visitor.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(audiences_visitor.last_seen_at, EXCLUDED.last_seen_at),
    expires_at = GREATEST(audiences_visitor.expires_at, EXCLUDED.expires_at)
RETURNING id, key_kind, key
"""

HIT_UPSERT = """
INSERT INTO audiences_visitortraithit
    (visitor_id, category_id, provider_id, observed_at, expires_at)
SELECT visitor, category, %(provider)s, observed, observed + %(ttl)s
FROM unnest(%(visitors)s::bigint[], %(categories)s::bigint[], %(observed)s::timestamptz[])
    AS h(visitor, category, observed)
ON CONFLICT (visitor_id, category_id, provider_id) DO UPDATE SET
    observed_at = GREATEST(audiences_visitortraithit.observed_at, EXCLUDED.observed_at),
    expires_at = GREATEST(audiences_visitortraithit.expires_at, EXCLUDED.expires_at)
"""


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
    with connection.cursor() as cursor:
        cursor.execute(
            VISITOR_UPSERT,
            {
                "ttl": ttl,
                "kinds": [k for k, _ in keys],
                "keys": [key for _, key in keys],
                "first": [seen[k][0] for k in keys],
                "last": [seen[k][1] for k in keys],
            },
        )
        visitor_ids = {(kind, key): pk for pk, kind, key in cursor.fetchall()}
        latest: dict[tuple[int, int], datetime] = {}
        for o in observations:
            hit = (visitor_ids[(o.key_kind, o.key)], o.category_id)
            latest[hit] = max(latest.get(hit, o.observed_at), o.observed_at)
        hits = sorted(latest)
        cursor.execute(
            HIT_UPSERT,
            {
                "provider": provider.pk,
                "ttl": ttl,
                "visitors": [v for v, _ in hits],
                "categories": [c for _, c in hits],
                "observed": [latest[h] for h in hits],
            },
        )
    return len(observations)


# --- visitors seen by collection, and their link to profiles -------------------------------


@dataclass(frozen=True)
class VisitorSighting:
    key_kind: str
    key: str
    seen_at: datetime
    country: str = ""
    device_type: str = ""
    browser: str = ""


SIGHTING_UPSERT = """
INSERT INTO audiences_visitor
    (key_kind, key, first_seen_at, last_seen_at, expires_at, country, device_type, browser,
     created_at)
SELECT kind, key, seen, seen, seen + %(ttl)s, country, device, browser, now()
FROM unnest(%(kinds)s::text[], %(keys)s::text[], %(seen)s::timestamptz[], %(countries)s::text[],
            %(devices)s::text[], %(browsers)s::text[])
    AS s(kind, key, seen, country, device, browser)
ON CONFLICT (key_kind, key) DO UPDATE SET
    first_seen_at = LEAST(audiences_visitor.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(audiences_visitor.last_seen_at, EXCLUDED.last_seen_at),
    expires_at = GREATEST(audiences_visitor.expires_at, EXCLUDED.expires_at),
    country = COALESCE(NULLIF(EXCLUDED.country, ''), audiences_visitor.country),
    device_type = COALESCE(NULLIF(EXCLUDED.device_type, ''), audiences_visitor.device_type),
    browser = COALESCE(NULLIF(EXCLUDED.browser, ''), audiences_visitor.browser)
"""


@transaction.atomic
def visitors_observe(*, sightings: list[VisitorSighting], retention_days: int = 90) -> int:
    """Create or refresh visitors seen in anonymous events (one upsert per batch): last seen
    and expiry move forward, known attributes are kept when a sighting lacks them."""
    latest: dict[tuple[str, str], VisitorSighting] = {}
    for sighting in sightings:
        key = (sighting.key_kind, sighting.key)
        if key not in latest or sighting.seen_at > latest[key].seen_at:
            latest[key] = sighting
    if not latest:
        return 0
    rows = [latest[key] for key in sorted(latest)]
    with connection.cursor() as cursor:
        cursor.execute(
            SIGHTING_UPSERT,
            {
                "ttl": timedelta(days=retention_days),
                "kinds": [r.key_kind for r in rows],
                "keys": [r.key for r in rows],
                "seen": [r.seen_at for r in rows],
                "countries": [r.country[:2].upper() for r in rows],
                "devices": [r.device_type for r in rows],
                "browsers": [r.browser[:60] for r in rows],
            },
        )
    return len(rows)


@transaction.atomic
def visitor_links_sync(*, profile: Profile) -> dict[str, int]:
    """Link the profile's browsers and devices (its anonymous_id and device_id identities) to
    it while it has advertising or personalisation consent; unlink them all when it has not.
    Call it after an identify and after every consent change of the person."""
    if not profiles_allowed_for_linking(Profile.objects.filter(pk=profile.pk)).exists():
        return {
            "linked": 0,
            "unlinked": Visitor.objects.filter(profile=profile).update(profile=None),
        }
    keys = list(
        Identity.objects.filter(
            profile=profile, kind__in=[Identity.Kind.ANONYMOUS_ID, Identity.Kind.DEVICE_ID]
        ).values_list("kind", "value")
    )
    cookies = [value for kind, value in keys if kind == Identity.Kind.ANONYMOUS_ID]
    devices = [value for kind, value in keys if kind == Identity.Kind.DEVICE_ID]
    # A visitor already linked to someone else (a shared device) is left alone.
    unlinked = Visitor.objects.filter(profile__isnull=True)
    linked = unlinked.filter(key_kind=Visitor.KeyKind.COOKIE, key__in=cookies).update(
        profile=profile
    ) + unlinked.filter(key_kind=Visitor.KeyKind.DEVICE, key__in=devices).update(profile=profile)
    return {"linked": linked, "unlinked": 0}


# --- audience membership -------------------------------------------------------------------


@transaction.atomic
def audience_members_set(
    *, audience: Audience, visitor_ids: Iterable[int], scores: dict[int, float] | None = None
) -> int:
    """Replace the audience's members; keeps the entry time of visitors who stay."""
    wanted = set(visitor_ids)
    now = timezone.now()
    with connection.cursor() as cursor:
        # An array parameter, not IN (...): audiences can exceed the query parameter limit.
        cursor.execute(
            "DELETE FROM audiences_audiencemembership "
            "WHERE audience_id = %s AND NOT (visitor_id = ANY(%s))",
            [audience.pk, list(wanted)],
        )
    AudienceMembership.objects.bulk_create(
        [
            AudienceMembership(
                audience=audience,
                visitor_id=visitor_id,
                entered_at=now,
                score=(scores or {}).get(visitor_id),
            )
            for visitor_id in wanted
        ],
        batch_size=5000,
        update_conflicts=bool(scores),
        ignore_conflicts=not scores,
        unique_fields=["audience", "visitor"] if scores else None,
        update_fields=["score"] if scores else None,
    )
    audience.size = len(wanted)
    audience.refreshed_at = now
    audience.save(update_fields=["size", "refreshed_at", "updated_at"])
    return audience.size


# --- exports to ad platforms ---------------------------------------------------------------


class ExportError(ValueError):
    pass


def audience_export(
    *,
    destination: str,
    profiles: Iterable[Profile] | QuerySet[Profile] | None = None,
    visitors: Iterable[Visitor] | QuerySet[Visitor] | None = None,
    segment=None,
    audience: Audience | None = None,
    created_by=None,
) -> AudienceExport:
    """Write a CSV for ``destination`` (google, meta or ids) and record it as an export job.

    Profiles go out only with advertising consent; visitors linked to a profile count as that
    profile. An export with fewer rows than ``CDPHUB_MIN_AUDIENCE_SIZE`` is refused (recorded
    with status ``refused`` and no file) so that no audience can single out a person."""
    if destination not in AudienceExport.Destination.values:
        raise ExportError(f"destination {destination!r} is not one of google, meta, ids")
    if (profiles is None) == (visitors is None):
        raise ExportError("give either profiles or visitors")
    job = AudienceExport.objects.create(
        destination=destination, segment=segment, audience=audience, created_by=created_by
    )
    header, rows = export_rows(destination, profiles, visitors)
    minimum = settings.CDPHUB_MIN_AUDIENCE_SIZE
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as buffer:
        writer = csv.writer(buffer)
        writer.writerow(header)
        count = 0
        for row in rows:
            writer.writerow(row)
            count += 1
        job.row_count, job.finished_at = count, timezone.now()
        if count < minimum:
            job.status = JobStatus.REFUSED
            job.message = (
                f"{count} rows is below the minimum audience size of {minimum}: "
                "refused so that no export can single out a person."
            )
            job.save(update_fields=["row_count", "finished_at", "status", "message"])
            return job
        buffer.seek(0)
        job.file.save(f"{destination}-export-{job.pk}.csv", File(buffer), save=False)
    job.status = JobStatus.DONE
    job.save(update_fields=["row_count", "finished_at", "status", "file"])
    return job


def export_rows(destination, profiles, visitors) -> tuple[list[str], Iterator[list[str]]]:
    if profiles is not None:
        allowed = profiles_allowed_for_advertising(profile_queryset(profiles))
        if destination == "ids":
            return ["id", "id_type"], profile_id_rows(allowed)
        return hashing.person_columns(destination), profile_hashed_rows(destination, allowed)
    visitor_qs = visitor_queryset(visitors)
    if destination == "ids":
        return ["id", "id_type"], (
            [key, kind] for key, kind in visitor_qs.order_by("pk").values_list("key", "key_kind")
        )
    linked = profiles_allowed_for_advertising(
        Profile.objects.filter(pk__in=visitor_qs.filter(profile__isnull=False).values("profile"))
    )
    devices = visitor_qs.filter(key_kind=Visitor.KeyKind.DEVICE, profile__isnull=True)
    return hashing.person_columns(destination), chain_rows(
        profile_hashed_rows(destination, linked),
        (["", "", key] for key in devices.order_by("pk").values_list("key", flat=True)),
    )


def chain_rows(*iterables):
    for iterable in iterables:
        yield from iterable


def profile_queryset(profiles) -> QuerySet[Profile]:
    if isinstance(profiles, QuerySet):
        return profiles
    return Profile.objects.filter(pk__in=[p.pk for p in profiles])


def visitor_queryset(visitors) -> QuerySet[Visitor]:
    if isinstance(visitors, QuerySet):
        return visitors
    return Visitor.objects.filter(pk__in=[v.pk for v in visitors])


PERSON_KINDS = (Identity.Kind.EMAIL, Identity.Kind.PHONE, Identity.Kind.DEVICE_ID)


def profile_identifiers(profiles: QuerySet[Profile]) -> Iterator[dict[str, str]]:
    """Per profile, its most recently seen e-mail, phone and device id."""
    identities = (
        Identity.objects.filter(profile__in=profiles.values("pk"), kind__in=PERSON_KINDS)
        .order_by("profile_id", "kind", "-last_seen_at")
        .values_list("profile_id", "kind", "value")
    )
    current, found = None, {}
    for profile_id, kind, value in identities.iterator(chunk_size=5000):
        if profile_id != current:
            if found:
                yield found
            current, found = profile_id, {}
        found.setdefault(kind, value)
    if found:
        yield found


def profile_hashed_rows(destination: str, profiles: QuerySet[Profile]) -> Iterator[list[str]]:
    for found in profile_identifiers(profiles):
        row = [
            safe_hash(hashing.hashed_email, destination, found.get(Identity.Kind.EMAIL)),
            safe_hash(hashing.hashed_phone, destination, found.get(Identity.Kind.PHONE)),
            found.get(Identity.Kind.DEVICE_ID, ""),
        ]
        if any(row):
            yield row


def safe_hash(hasher, destination: str, value: str | None) -> str:
    if not value:
        return ""
    try:
        return hasher(destination, value)
    except InvalidIdentifier:
        return ""  # a value the platform could not match anyway


def profile_id_rows(profiles: QuerySet[Profile]) -> Iterator[list[str]]:
    kinds = {Identity.Kind.ANONYMOUS_ID: "cookie", Identity.Kind.DEVICE_ID: "device"}
    identities = Identity.objects.filter(
        profile__in=profiles.values("pk"), kind__in=list(kinds)
    ).order_by("pk")
    for kind, value in identities.values_list("kind", "value").iterator(chunk_size=5000):
        yield [value, kinds[kind]]


# --- retention -----------------------------------------------------------------------------


def visitor_data_purge(*, now: datetime | None = None, batch_size: int = 5000) -> dict[str, int]:
    """Delete expired trait hits, then expired visitors (with their remaining hits and
    memberships), ``batch_size`` rows per transaction so locks stay short and a purge of
    millions of rows never holds one giant transaction."""
    now = now or timezone.now()
    return {
        "trait_hits": expired_rows_delete(VisitorTraitHit, now, batch_size),
        "visitors": expired_rows_delete(Visitor, now, batch_size),
    }


def expired_rows_delete(model, now: datetime, batch_size: int) -> int:
    table = model._meta.db_table
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            if model is Visitor:
                # ON DELETE CASCADE is emulated by Django, not the database: clear children.
                cursor.execute(
                    "SELECT id FROM audiences_visitor WHERE expires_at <= %s "
                    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                    [now, batch_size],
                )
                ids = [row[0] for row in cursor.fetchall()]
                if ids:
                    for child in ("audiences_visitortraithit", "audiences_audiencemembership"):
                        cursor.execute(f"DELETE FROM {child} WHERE visitor_id = ANY(%s)", [ids])  # noqa: S608
                    cursor.execute("DELETE FROM audiences_visitor WHERE id = ANY(%s)", [ids])
                count = len(ids)
            else:
                cursor.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "  # noqa: S608
                    "WHERE expires_at <= %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
                    [now, batch_size],
                )
                count = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted
