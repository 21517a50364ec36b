"""Visitors: sightings, consent-bound links to profiles, audience members, retention."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audiences.models import (
    Audience,
    AudienceMembership,
    AudienceMembershipChange,
    Visitor,
    VisitorTraitHit,
)
from audiences.selectors import person_visitor_keys, profiles_allowed_for_linking
from audiences.syncs import audience_syncs_queue
from cdphub.sql import execute, query
from profiles.models import Identity, Profile

# --- visitors seen by collection, and their link to profiles -------------------------------


@dataclass(frozen=True)
class VisitorSighting:
    key_kind: str
    key: str
    seen_at: datetime
    country: str = ""
    device_type: str = ""
    browser: str = ""


VISITOR = Visitor._meta.db_table

# Positional binary parameters (cdphub.sql.query): processing upserts thousands per batch. A
# visitor seen again within SEEN_GRANULARITY with nothing new is not rewritten: every click would
# otherwise update its row (and its 90-day expiry moves by minutes at most).
SIGHTING_UPSERT = f"""
INSERT INTO {VISITOR}
    (key_kind, key, first_seen_at, last_seen_at, expires_at, country, device_type, browser,
     created_at)
SELECT kind, key, seen, seen, seen + %b, country, device, browser, now()
FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::text[], %b::text[])
    AS s(kind, key, seen, country, device, browser)
ON CONFLICT (key_kind, key) DO UPDATE SET
    first_seen_at = LEAST({VISITOR}.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST({VISITOR}.last_seen_at, EXCLUDED.last_seen_at),
    expires_at = GREATEST({VISITOR}.expires_at, EXCLUDED.expires_at),
    country = COALESCE(NULLIF(EXCLUDED.country, ''), {VISITOR}.country),
    device_type = COALESCE(NULLIF(EXCLUDED.device_type, ''), {VISITOR}.device_type),
    browser = COALESCE(NULLIF(EXCLUDED.browser, ''), {VISITOR}.browser)
WHERE EXCLUDED.last_seen_at > {VISITOR}.last_seen_at + %b
    OR EXCLUDED.first_seen_at < {VISITOR}.first_seen_at
    OR EXCLUDED.expires_at > {VISITOR}.expires_at + %b
    OR EXCLUDED.country NOT IN ('', {VISITOR}.country)
    OR EXCLUDED.device_type NOT IN ('', {VISITOR}.device_type)
    OR EXCLUDED.browser NOT IN ('', {VISITOR}.browser)
"""  # noqa: S608 - table names from model metadata; values are parameters
SEEN_GRANULARITY = timedelta(minutes=5)


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
    query(
        SIGHTING_UPSERT,
        [
            timedelta(days=retention_days),
            [r.key_kind for r in rows],
            [r.key for r in rows],
            [r.seen_at for r in rows],
            [r.country[:2].upper() for r in rows],
            [r.device_type for r in rows],
            [r.browser[:60] for r in rows],
            SEEN_GRANULARITY,
            SEEN_GRANULARITY,
        ],
        fetch=False,
    )
    return len(rows)


LINK_SQL = f"""
    UPDATE {VISITOR} v SET profile_id = i.profile_id
    FROM {Identity._meta.db_table} i
    WHERE i.profile_id = ANY(%b::bigint[])
      AND i.kind IN ('anonymous_id', 'device_id')
      AND v.key_kind = CASE i.kind WHEN 'anonymous_id' THEN 'cookie' ELSE 'device' END
      AND v.key = i.value
      AND v.profile_id IS NULL
"""  # noqa: S608 - table names from model metadata; values are parameters


@transaction.atomic
def visitor_links_sync_many(*, profile_ids: list[int]) -> dict[str, int]:
    """``visitor_links_sync`` for many profiles in three statements (event processing calls
    it per batch): link the visitors of those allowed, unlink those of the others."""
    if not profile_ids:
        return {"linked": 0, "unlinked": 0}
    allowed = list(
        profiles_allowed_for_linking(Profile.objects.filter(pk__in=profile_ids)).values_list(
            "pk", flat=True
        )
    )
    refused = sorted(set(profile_ids) - set(allowed))
    unlinked = Visitor.objects.filter(profile_id__in=refused).update(profile=None) if refused else 0
    linked = 0
    if allowed:
        linked = execute(LINK_SQL, [sorted(allowed)])
    return {"linked": linked, "unlinked": unlinked}


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
    cookies, devices = person_visitor_keys(profile.pk)
    # A visitor already linked to someone else (a shared device) is left alone.
    unlinked = Visitor.objects.filter(profile__isnull=True)
    linked = unlinked.filter(key_kind=Visitor.KeyKind.COOKIE, key__in=cookies).update(
        profile=profile
    ) + unlinked.filter(key_kind=Visitor.KeyKind.DEVICE, key__in=devices).update(profile=profile)
    return {"linked": linked, "unlinked": 0}


# --- audience membership -------------------------------------------------------------------


MEMBERSHIP = AudienceMembership._meta.db_table
CHANGE = AudienceMembershipChange._meta.db_table
# Who leaves, and who comes in, each recorded in the history in the same statement (with the
# visitor's key: an exit outlives its visitor). Lookalikes update the score of who stays.
MEMBERS_EXIT_SQL = f"""
WITH gone AS (
    DELETE FROM {MEMBERSHIP}
    WHERE audience_id = %b AND NOT (visitor_id = ANY(%b::bigint[]))
    RETURNING visitor_id
)
INSERT INTO {CHANGE} (audience_id, visitor_id, key_kind, key, kind, changed_at)
SELECT %b, v.id, v.key_kind, v.key, 'exited', %b
FROM gone JOIN {VISITOR} v ON v.id = gone.visitor_id
ORDER BY v.id
"""  # noqa: S608 - table names from model metadata; values are parameters
MEMBERS_ENTER_SQL = f"""
WITH upserted AS (
    INSERT INTO {MEMBERSHIP} (audience_id, visitor_id, score, entered_at)
    SELECT %b, t.visitor_id, t.score, %b
    FROM unnest(%b::bigint[], %b::float8[]) AS t(visitor_id, score)
    ON CONFLICT (audience_id, visitor_id) DO {{on_conflict}}
    RETURNING visitor_id, xmax = 0 AS inserted
)
INSERT INTO {CHANGE} (audience_id, visitor_id, key_kind, key, kind, changed_at)
SELECT %b, v.id, v.key_kind, v.key, 'entered', %b
FROM upserted JOIN {VISITOR} v ON v.id = upserted.visitor_id
WHERE upserted.inserted
ORDER BY v.id
"""  # noqa: S608 - table names from model metadata; values are parameters


@transaction.atomic
def audience_members_set(
    *, audience: Audience, visitor_ids: Iterable[int], scores: dict[int, float] | None = None
) -> int:
    """Replace the audience's members; keeps the entry time of visitors who stay, and records
    who entered and exited (the history the audience's syncs send, ``audiences.syncs``)."""
    wanted = sorted(set(visitor_ids))
    now = timezone.now()
    # The audience's row lock: one writer of its members at a time, and the syncs read its
    # history only while no writer holds it (a change committed later with a smaller id
    # would be skipped).
    Audience.objects.select_for_update().filter(pk=audience.pk).exists()
    # Arrays, not IN (...): audiences can exceed the query parameter limit.
    execute(MEMBERS_EXIT_SQL, [audience.pk, wanted, audience.pk, now])
    on_conflict = "UPDATE SET score = EXCLUDED.score" if scores else "NOTHING"
    execute(
        MEMBERS_ENTER_SQL.format(on_conflict=on_conflict),
        [
            audience.pk,
            now,
            wanted,
            [(scores or {}).get(pk) for pk in wanted],
            audience.pk,
            now,
        ],
    )
    audience.size = len(wanted)
    audience.refreshed_at = now
    audience.save(update_fields=["size", "refreshed_at", "updated_at"])
    transaction.on_commit(lambda: audience_syncs_queue([audience.pk]))
    return audience.size


# --- retention -----------------------------------------------------------------------------

EXPIRED_EXIT_SQL = f"""
WITH gone AS (
    DELETE FROM {MEMBERSHIP} WHERE visitor_id = ANY(%b::bigint[])
    RETURNING audience_id, visitor_id
), logged AS (
    INSERT INTO {CHANGE} (audience_id, visitor_id, key_kind, key, kind, changed_at)
    SELECT gone.audience_id, v.id, v.key_kind, v.key, 'exited', %b
    FROM gone JOIN {VISITOR} v ON v.id = gone.visitor_id
    ORDER BY gone.audience_id, v.id
)
UPDATE {Audience._meta.db_table} a SET size = GREATEST(a.size - left_.n, 0)
FROM (SELECT audience_id, count(*) AS n FROM gone GROUP BY audience_id) left_
WHERE a.id = left_.audience_id
RETURNING a.id
"""  # noqa: S608 - table names from model metadata; values are parameters


def members_of_expired_exit(visitor_ids: list[int], now: datetime) -> list[int]:
    """Take expired visitors out of their audiences as exits in the history (their syncs tell
    the receivers) and the audiences' sizes; returns the audiences. Each audience's row is
    locked first, as by every writer of its members."""
    audiences = Audience.objects.filter(memberships__visitor_id__in=visitor_ids).distinct()
    locked = list(
        Audience.objects.select_for_update()
        .filter(pk__in=audiences.values("pk"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not locked:
        return []
    return [row[0] for row in query(EXPIRED_EXIT_SQL, [visitor_ids, now])]


def visitor_data_purge(
    *, now: datetime | None = None, unseen_since: datetime | None = None, batch_size: int = 5000
) -> dict[str, int]:
    """Delete expired trait hits, then expired visitors and those not seen since
    ``unseen_since`` (with their remaining hits and memberships: exits in the audiences'
    history), ``batch_size`` rows per transaction so locks stay short and a purge of millions
    of rows never holds one giant transaction."""
    now = now or timezone.now()
    hits = expired_hits_delete(now, batch_size)
    visitors, their_hits = expired_visitors_delete(now, unseen_since, batch_size)
    return {"trait_hits": hits + their_hits, "visitors": visitors}


def expired_hits_delete(now: datetime, batch_size: int) -> int:
    table = VisitorTraitHit._meta.db_table
    deleted = 0
    while True:
        count = execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "  # noqa: S608 - table names from model metadata; values are parameters
            "WHERE expires_at <= %b ORDER BY id LIMIT %b FOR UPDATE SKIP LOCKED)",
            [now, batch_size],
        )
        deleted += count
        if count < batch_size:
            return deleted


def expired_visitors_delete(
    now: datetime, unseen_since: datetime | None, batch_size: int
) -> tuple[int, int]:
    """Visitors expired or unseen since then, a batch per transaction, their trait hits and
    memberships with them (ON DELETE CASCADE is emulated by Django, not the database: the
    children are cleared here); their audiences' syncs are told after. Returns how many
    visitors and trait hits were deleted."""
    unseen_since = unseen_since or datetime.min.replace(tzinfo=UTC)
    visitors = hits = 0
    left: set[int] = set()  # audiences that the deleted visitors left
    while True:
        with transaction.atomic():
            ids = [
                row[0]
                for row in query(
                    f"SELECT id FROM {VISITOR} WHERE expires_at <= %b OR last_seen_at < %b "  # noqa: S608 - table names from model metadata; values are parameters
                    "ORDER BY id LIMIT %b FOR UPDATE SKIP LOCKED",
                    [now, unseen_since, batch_size],
                )
            ]
            if ids:
                left.update(members_of_expired_exit(ids, now))
                hits += execute(
                    f"DELETE FROM {VisitorTraitHit._meta.db_table}"  # noqa: S608 - table names from model metadata; values are parameters
                    " WHERE visitor_id = ANY(%b::bigint[])",
                    [ids],
                )
                execute(f"DELETE FROM {VISITOR} WHERE id = ANY(%b::bigint[])", [ids])  # noqa: S608 - table names from model metadata; values are parameters
        visitors += len(ids)
        if len(ids) < batch_size:
            audience_syncs_queue(left)
            return visitors, hits
