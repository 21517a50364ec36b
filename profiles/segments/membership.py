"""Segment membership: preview, refresh (scheduled, on demand, on event), static lists, members.

Membership is materialised in ``SegmentMembership`` by two statements per refresh: the rule's
query into a temporary table, then one statement for the rows that left (DELETE), the rows that
came in (INSERT ... SELECT) and their history. A refresh records its status and error on the
segment, so it is never left "calculating": a failure is shown and the next scheduled run retries
it, and a refresh whose worker died is picked up again once it is older than
``CDPHUB_SEGMENT_REFRESH_STALE_MINUTES``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from cdphub.metrics import SEGMENT_REFRESH_SECONDS
from cdphub.replicas import replica_reads
from cdphub.sql import execute, orm_sql, query
from profiles.models import (
    Identity,
    Profile,
    Segment,
    SegmentMembership,
    SegmentMembershipChange,
    SegmentSizeSnapshot,
)
from profiles.resolution.normalize import InvalidIdentifier, normalize_identifier
from profiles.segments import changes
from profiles.segments.rules import personal_conditions, rule_queryset

logger = logging.getLogger(__name__)

# Advisory-lock namespace of segment refreshes (the second key is the segment id).
REFRESH_LOCK = 0x5E6
# Profiles per statement when a segment is re-evaluated for the profiles events touched.
PROFILE_BATCH = 5000
UPLOAD_KINDS = (Identity.Kind.EMAIL, Identity.Kind.USER_ID)


@dataclass
class RefreshResult:
    segment_id: int
    entered: int = 0
    exited: int = 0
    size: int = 0
    error: str = ""


@dataclass
class UploadResult:
    rows: int = 0
    resolved: int = 0
    entered: int = 0
    exited: int = 0
    size: int = 0
    unresolved: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


# --- selectors ----------------------------------------------------------------------------------


def segment_preview(*, rule: dict, sample_size: int = 10, segment_id: int | None = None) -> dict:
    """Count and a sample of who the rule selects now; raises ``RuleError`` for a bad rule.
    Read from a replica, when there is one."""
    with replica_reads():
        members = rule_queryset(rule, segment_id=segment_id)
        sample = list(members.order_by("-id")[:sample_size])
        return {"count": members.count(), "sample": sample}


def segment_rule_members(
    segment: Segment, profile_ids: list[int] | None = None
) -> QuerySet[Profile]:
    """Who the segment's rule selects now (dynamic segments), or its uploaded members;
    only among ``profile_ids`` when given."""
    if segment.kind == Segment.Kind.STATIC:
        members = SegmentMembership.objects.filter(segment=segment, profile=OuterRef("pk"))
        queryset = Profile.objects.active().filter(Exists(members))
        return queryset if profile_ids is None else queryset.filter(pk__in=profile_ids)
    return rule_queryset(segment.rule, segment_id=segment.pk, profile_ids=profile_ids)


def segment_is_personal(segment: Segment) -> bool:
    """Whether the segment's rule conditions on personal data: its members and sizes are then
    shown only to those who may see personal data (``profiles.segments.rules.personal``)."""
    return segment.kind == Segment.Kind.DYNAMIC and bool(personal_conditions(segment.rule))


def segment_members(segment: Segment) -> QuerySet[SegmentMembership]:
    """The materialised members, as of the last refresh."""
    return SegmentMembership.objects.filter(segment=segment).select_related("profile")


def segment_membership(segment: Segment, profile_id: int) -> SegmentMembership | None:
    """One profile's membership, following merges to the surviving profile."""
    from profiles.selectors import profile_resolve

    profile = profile_resolve(profile_id)
    if profile is None:
        return None
    return SegmentMembership.objects.filter(segment=segment, profile=profile).first()


def members_for_purpose(segment: Segment, purpose_code: str) -> QuerySet[Profile]:
    """Members the consent selector allows for ``purpose_code`` now: the only profiles an
    export or activation of the segment may reach."""
    from consent.selectors import profiles_with_consent

    memberships = SegmentMembership.objects.filter(segment=segment, profile=OuterRef("pk"))
    return profiles_with_consent(purpose_code).filter(Exists(memberships))


def segments_due(now: datetime | None = None) -> list[Segment]:
    """Dynamic segments whose interval has passed, that failed, or whose refresh went stale."""
    now = now or timezone.now()
    stale = timedelta(minutes=settings.CDPHUB_SEGMENT_REFRESH_STALE_MINUTES)
    due = []
    for segment in Segment.objects.filter(kind=Segment.Kind.DYNAMIC).exclude(rule={}):
        if segment_is_due(segment, now, stale):
            due.append(segment)
    return due


def segment_is_due(segment: Segment, now: datetime, stale: timedelta) -> bool:
    if segment.status == Segment.Status.CALCULATING:
        started = segment.refresh_started_at
        return started is None or started <= now - stale
    if segment.status in (Segment.Status.NEW, Segment.Status.FAILED):
        return True
    interval = timedelta(minutes=segment.refresh_interval_minutes)
    return bool(interval) and (
        segment.refreshed_at is None or segment.refreshed_at + interval <= now
    )


# --- refresh ------------------------------------------------------------------------------------


def membership_sync(
    *, segment_id: int, members: QuerySet[Profile], scope: list[int] | None = None
) -> tuple[int, int, int]:
    """Make the segment's memberships equal ``members`` (within ``scope`` profile ids when
    given) and record who entered and exited. Returns (entered, exited, members counted).

    A full refresh runs the rule's query first on its own into a temporary table, where
    PostgreSQL may use parallel workers (a statement that writes may not); one statement then
    applies the diff and writes the history. A scoped refresh does it all in one statement.
    Must run inside a transaction."""
    try:
        target_sql, target_params = orm_sql(members.order_by().values("pk"))
    except EmptyResultSet:
        # A filter that can match nothing (``__in`` an empty list, as an upload of no valid
        # identifiers gives) has no SQL: the target is no profile.
        target_sql, target_params = "SELECT NULL::bigint AS id WHERE false", ()
    membership = SegmentMembership._meta.db_table
    history = SegmentMembershipChange._meta.db_table
    in_scope = "AND m.profile_id = ANY(%b::bigint[])" if scope is not None else ""
    now = timezone.now()
    diff = f"""
        WITH {{target}} exited AS (
            DELETE FROM {membership} m
            WHERE m.segment_id = %b {in_scope}
              AND NOT EXISTS (SELECT 1 FROM segment_target t WHERE t.id = m.profile_id)
            RETURNING m.profile_id
        ),
        entered AS (
            -- Who is a member already is the conflict, found in the unique index row by row.
            -- (An anti-join against the memberships instead is planned from their statistics:
            -- analyzed empty, a first refresh read the whole table once per target row.)
            INSERT INTO {membership} (segment_id, profile_id, entered_at)
            SELECT %b, t.id, %b FROM segment_target t
            ON CONFLICT (segment_id, profile_id) DO NOTHING
            RETURNING profile_id
        ),
        history AS (
            INSERT INTO {history} (segment_id, profile_id, kind, changed_at)
            SELECT %b, profile_id, 'entered', %b FROM entered
            UNION ALL
            SELECT %b, profile_id, 'exited', %b FROM exited
        )
        SELECT (SELECT count(*) FROM entered), (SELECT count(*) FROM exited),
               (SELECT count(*) FROM segment_target)
    """  # noqa: S608 - table names are ours; every value is a parameter
    params = [
        segment_id,
        *([scope] if scope is not None else []),
        segment_id,
        now,
        segment_id,
        now,
        segment_id,
        now,
    ]
    if scope is not None:
        # A few thousand profiles after their events: one statement, no temporary table
        # (creating and dropping one per call costs more than the rule itself).
        target = f"segment_target (id) AS MATERIALIZED ({target_sql}),"
        ((entered, exited, counted),) = query(diff.format(target=target), [*target_params, *params])
    else:
        execute("DROP TABLE IF EXISTS pg_temp.segment_target")
        execute(
            f"CREATE TEMP TABLE segment_target (id) ON COMMIT DROP AS {target_sql}", target_params
        )
        # Indexed, so that no plan of the exits' anti-join can read it once per member.
        execute("CREATE INDEX ON segment_target (id)")
        execute("ANALYZE segment_target")
        ((entered, exited, counted),) = query(diff.format(target=""), params)
        execute("DROP TABLE segment_target")
    if entered or exited:
        changes.notify_after_commit(segment_id)
    return entered, exited, counted


def refresh_lock(segment_id: int) -> None:
    """One writer of a segment's memberships at a time (full, on-event and upload refreshes
    queue behind each other instead of interleaving their diffs)."""
    query("SELECT pg_advisory_xact_lock(%b::int, %b::int)", [REFRESH_LOCK, segment_id])


def segment_refresh(*, segment: Segment) -> RefreshResult:
    """Recompute the segment's members now. Never raises for a bad rule or a database error:
    the error is stored on the segment (status "failed") and the next run retries."""
    result = RefreshResult(segment_id=segment.pk)
    Segment.objects.filter(pk=segment.pk).update(
        status=Segment.Status.CALCULATING, refresh_started_at=timezone.now()
    )
    started = time.perf_counter()
    try:
        with transaction.atomic():
            segment_refresh_locked(segment, result)
    except Exception as exc:  # recorded and shown on the segment; the next run retries
        logger.exception("refresh of segment %s failed", segment.pk)
        result.error = f"{type(exc).__name__}: {exc}"[:2000]
        Segment.objects.filter(pk=segment.pk).update(
            status=Segment.Status.FAILED, last_error=result.error
        )
    outcome = "failed" if result.error else "ok"
    SEGMENT_REFRESH_SECONDS.labels(outcome).observe(time.perf_counter() - started)
    segment.refresh_from_db()
    return result


def segment_refresh_locked(segment: Segment, result: RefreshResult) -> None:
    # set_config(..., true) is SET LOCAL with the value as a parameter.
    query(
        "SELECT set_config('statement_timeout', %b::text, true)",
        [f"{settings.CDPHUB_SEGMENT_REFRESH_TIMEOUT_SECONDS}s"],
    )
    refresh_lock(segment.pk)
    if segment.kind == Segment.Kind.DYNAMIC:
        members = segment_rule_members(segment)
        result.entered, result.exited, result.size = membership_sync(
            segment_id=segment.pk, members=members
        )
    else:
        result.size = SegmentMembership.objects.filter(segment=segment).count()
    segment_refresh_record(segment, size=result.size, entered=result.entered, exited=result.exited)


def segment_refresh_record(segment: Segment, *, size: int, entered: int, exited: int) -> None:
    """A refresh that ended well: a point of the size history, and the segment ready."""
    now = timezone.now()
    SegmentSizeSnapshot.objects.create(
        segment=segment, size=size, entered=entered, exited=exited, taken_at=now
    )
    Segment.objects.filter(pk=segment.pk).update(
        status=Segment.Status.READY, size=size, refreshed_at=now, last_error=""
    )


def segments_refresh_for_profiles(*, profile_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Re-evaluate every dynamic segment for these profiles only (after their events were
    processed). Returns {segment id: (entered, exited)} for segments that changed."""
    ids = sorted(set(profile_ids))
    changed: dict[int, tuple[int, int]] = {}
    segments = Segment.objects.filter(kind=Segment.Kind.DYNAMIC).exclude(rule={})
    for segment in segments:
        for start in range(0, len(ids), PROFILE_BATCH):
            batch = ids[start : start + PROFILE_BATCH]
            entered, exited = segment_refresh_profiles(segment, batch)
            if entered or exited:
                before = changed.get(segment.pk, (0, 0))
                changed[segment.pk] = (before[0] + entered, before[1] + exited)
    return changed


def segment_refresh_profiles(segment: Segment, profile_ids: list[int]) -> tuple[int, int]:
    try:
        with transaction.atomic():
            refresh_lock(segment.pk)
            members = segment_rule_members(segment, profile_ids)
            entered, exited, _ = membership_sync(
                segment_id=segment.pk, members=members, scope=profile_ids
            )
            if entered or exited:
                Segment.objects.filter(pk=segment.pk).update(size=F("size") + entered - exited)
            return entered, exited
    except Exception:
        # Event processing must not stop on one segment: the scheduled full refresh records
        # the error on the segment and repairs the memberships.
        logger.exception("segment %s not refreshed for %d profiles", segment.pk, len(profile_ids))
        return 0, 0


# --- static segments ----------------------------------------------------------------------------


def upload_values(data: bytes | str, kind: str) -> Iterator[str]:
    """The identifiers of an uploaded CSV: the column named like ``kind`` (``email``,
    ``user_id``), or the first column when there is no such header."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return
    header = [cell.strip().lower() for cell in rows[0]]
    names = {kind, kind.replace("_", ""), "userid" if kind == "user_id" else "e-mail"}
    column = next((i for i, name in enumerate(header) if name in names), None)
    body = rows[1:] if column is not None else rows
    for row in body:
        cell = row[column or 0].strip() if len(row) > (column or 0) else ""
        if cell:
            yield cell


def segment_static_upload(*, segment: Segment, data: bytes | str, kind: str) -> UploadResult:
    """Replace a static segment's members by the profiles of an uploaded list of e-mail
    addresses or user ids (resolved through identities). Unknown and invalid values are
    reported, not silently dropped."""
    if segment.kind != Segment.Kind.STATIC:
        raise ValueError("only static segments take an uploaded list")
    if kind not in UPLOAD_KINDS:
        raise ValueError(f"kind must be one of {', '.join(UPLOAD_KINDS)}")
    result = UploadResult()
    values: dict[str, str] = {}
    for raw in upload_values(data, kind):
        result.rows += 1
        try:
            values[normalize_identifier(kind, raw)] = raw
        except InvalidIdentifier:
            result.invalid.append(raw)
    found = dict(
        Identity.objects.filter(kind=kind, value__in=values).values_list("value", "profile_id")
    )
    result.unresolved = [raw for value, raw in values.items() if value not in found]
    result.resolved = len(found)
    members = Profile.objects.active().filter(identities__kind=kind, identities__value__in=values)
    with transaction.atomic():
        refresh_lock(segment.pk)
        result.entered, result.exited, _ = membership_sync(
            segment_id=segment.pk, members=members.distinct()
        )
        result.size = SegmentMembership.objects.filter(segment=segment).count()
        segment_refresh_record(
            segment, size=result.size, entered=result.entered, exited=result.exited
        )
    return result


def profile_activity_refresh(*, profile_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """What to run after events of these profiles were processed: their computed traits, then
    their segment memberships (rules may read computed traits)."""
    from profiles.segments.computed import computed_traits_update

    ids = sorted(set(profile_ids))
    computed_traits_update(profile_ids=ids)
    return segments_refresh_for_profiles(profile_ids=ids)
