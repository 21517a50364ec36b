"""Visitors: sightings, consent-bound links to profiles, audience members, retention."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audiences.models import Audience, AudienceMembership, Visitor, VisitorTraitHit
from audiences.selectors import profiles_allowed_for_linking
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
    # An array parameter, not IN (...): audiences can exceed the query parameter limit.
    execute(
        f"DELETE FROM {AudienceMembership._meta.db_table} "  # noqa: S608 - table names from model metadata; values are parameters
        "WHERE audience_id = %b AND NOT (visitor_id = ANY(%b::bigint[]))",
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
        with transaction.atomic():
            if model is Visitor:
                # ON DELETE CASCADE is emulated by Django, not the database: clear children.
                rows = query(
                    f"SELECT id FROM {table} WHERE expires_at <= %b "  # noqa: S608 - table names from model metadata; values are parameters
                    "ORDER BY id LIMIT %b FOR UPDATE SKIP LOCKED",
                    [now, batch_size],
                )
                ids = [row[0] for row in rows]
                if ids:
                    for child in (VisitorTraitHit, AudienceMembership):
                        execute(
                            f"DELETE FROM {child._meta.db_table}"  # noqa: S608 - table names from model metadata; values are parameters
                            " WHERE visitor_id = ANY(%b::bigint[])",
                            [ids],
                        )
                    execute(f"DELETE FROM {table} WHERE id = ANY(%b::bigint[])", [ids])  # noqa: S608 - table names from model metadata; values are parameters
                count = len(ids)
            else:
                count = execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "  # noqa: S608
                    "WHERE expires_at <= %b ORDER BY id LIMIT %b FOR UPDATE SKIP LOCKED)",
                    [now, batch_size],
                )
        deleted += count
        if count < batch_size:
            return deleted
