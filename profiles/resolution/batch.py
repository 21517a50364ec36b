"""Identity resolution of one batch of collected messages, in memory, then written back with a
few bulk statements: new profiles, new identities, events (built by PostgreSQL from the staged
JSON), trait updates, conflicts. Called by profiles.ingest.processing, which claims and locks.

One module: the resolver is one class whose steps share the batch's in-memory state, and the
statement that turns staged rows into events is written next to the code that fills it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings

from cdphub.sql import query
from profiles.eventstore import event_partitions_ensure_for
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    PendingMessage,
    Profile,
    SeenMessage,
    SharedIdentifier,
)
from profiles.resolution.identifiers import WEAK_KINDS
from profiles.resolution.merges import profile_merge, profiles_lock

Identifier = tuple[str, str]
SET_ONCE_KEY = "$set_once"
# last_seen_at of profiles and identities moves in steps of this size: a visitor's every click
# would otherwise rewrite their profile and identity rows.
LAST_SEEN_GRANULARITY = timedelta(minutes=5)
PENDING_TABLE = PendingMessage._meta.db_table
EVENT_TABLE = Event._meta.db_table
IDENTITY_TABLE = Identity._meta.db_table
SHARED_TABLE = SharedIdentifier._meta.db_table
PROFILE_TABLE = Profile._meta.db_table
SEEN_TABLE = SeenMessage._meta.db_table

# Staged messages leave the queue and become event rows in one statement, per the Segment
# spec: the track event name, the page/screen name, identify traits (at the root for Segment,
# in context.traits for RudderStack), group traits, track/page/screen properties.
EVENTS_SQL = f"""
    WITH removed AS (
        -- By id, so the queue's primary key finds the rows; a join with the arrays may be
        -- planned to read the whole queue when it was analysed nearly empty.
        DELETE FROM {PENDING_TABLE} WHERE id = ANY(%b::bigint[]) RETURNING *
    ), processed AS (
        SELECT u.profile_id, u.user_id, u.anonymous_id, removed.*
        FROM removed
        JOIN unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[])
            AS u(staged_id, profile_id, user_id, anonymous_id) ON removed.id = u.staged_id
    ), staged AS (
        SELECT processed.*,
            -- Server SDKs send a page/screen category beside the name, analytics.js among
            -- the properties: stored the same way, the properties' own one winning.
            CASE WHEN type IN ('page', 'screen') AND payload->'category' IS NOT NULL
                    AND jsonb_typeof(payload->'category') <> 'null'
                THEN jsonb_build_object('category', payload->'category') ELSE '{{}}' END
            || CASE WHEN jsonb_typeof(payload->'properties') = 'object'
                THEN payload->'properties' ELSE '{{}}' END AS props,
            CASE WHEN jsonb_typeof(payload->'traits') = 'object'
                    AND payload->'traits' <> '{{}}' THEN payload->'traits'
                WHEN jsonb_typeof(payload->'context'->'traits') = 'object'
                    THEN payload->'context'->'traits'
                ELSE '{{}}' END AS traits
        FROM processed
    ), first_seen AS (
        -- De-duplication (profiles.eventstore): an event is stored only for a message id not
        -- seen within the window. Staged messages are unique per source and message id.
        INSERT INTO {SEEN_TABLE} (source_id, message_id, seen_at, timestamp)
        SELECT source_id, message_id, received_at, timestamp FROM processed
        ON CONFLICT DO NOTHING
        RETURNING source_id, message_id
    )
    INSERT INTO {EVENT_TABLE}
        (profile_id, source_id, type, name, properties, context, user_id, anonymous_id,
         message_id, timestamp, original_timestamp, sent_at, received_at)
    SELECT profile_id, source_id, type,
        left(coalesce(CASE type
            WHEN 'track' THEN payload->>'event'
            WHEN 'page' THEN coalesce(payload->>'name', props->>'name')
            WHEN 'screen' THEN coalesce(payload->>'name', props->>'name')
            WHEN 'group' THEN payload->>'groupId'
        END, ''), 255),
        CASE type
            WHEN 'identify' THEN traits
            WHEN 'group' THEN CASE WHEN jsonb_typeof(payload->'traits') = 'object'
                THEN payload->'traits' ELSE '{{}}' END
            WHEN 'alias' THEN jsonb_build_object('previousId', payload->'previousId')
            ELSE props
        END,
        CASE WHEN jsonb_typeof(payload->'context') = 'object'
            THEN payload->'context' ELSE '{{}}' END,
        user_id, anonymous_id, message_id, timestamp, original_timestamp, sent_at, received_at
    FROM staged JOIN first_seen USING (source_id, message_id)
"""  # noqa: S608 - table names from model metadata; values are parameters


@dataclass
class Staged:
    id: int
    source_id: int
    message_id: str
    type: str
    payload: dict
    timestamp: datetime
    received_at: datetime
    lane: int = 0  # the staging lane it was claimed from (PendingMessage.lane)
    identifiers: list[Identifier] = field(default_factory=list)
    profile: int = 0  # a profile id, or a negative placeholder for a profile not yet created


def as_json(value):
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _iso(moment: datetime) -> str:
    # Fixed width so that trait timestamps compare correctly as strings.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BatchResolver:
    """Resolves the identities of one batch of messages in memory, against what the database
    holds, then writes profiles, identities, events and traits with a few bulk statements."""

    def __init__(self, rows: list[Staged]):
        self.rows = sorted(rows, key=lambda row: (row.timestamp, row.id))
        self.owner: dict[Identifier, int] = {}
        self.identity_ids: dict[Identifier, int] = {}
        self.identity_last_seen: dict[int, datetime] = {}
        self.redirect: dict[int, int] = {}
        self.users: dict[int, set[str]] = {}
        self.shared: dict[Identifier, SharedIdentifier] = {}
        self.shared_changed: set[Identifier] = set()
        self.new_identities: dict[Identifier, Staged] = {}
        # (message, identifier, other profile, this message's profile so far, users, theirs)
        self.pending_conflicts: list[tuple] = []
        self.placeholders = 0
        self.max_users = settings.CDPHUB_SHARED_ID_MAX_USERS
        self._load()

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> None:
        identifiers = sorted({ident for row in self.rows for ident in row.identifiers})
        if not identifiers:
            return
        found_rows = query(
            f"SELECT i.kind, i.value, i.profile_id, i.id, i.last_seen_at FROM {IDENTITY_TABLE} i "  # noqa: S608 - table names from model metadata; values are parameters
            "JOIN unnest(%b::text[], %b::text[]) AS u(k, v) ON i.kind = u.k AND i.value = u.v",
            [[i[0] for i in identifiers], [i[1] for i in identifiers]],
        )
        for kind, value, profile_id, identity_id, last_seen in found_rows:
            self.owner[(kind, value)] = profile_id
            self.identity_ids[(kind, value)] = identity_id
            self.identity_last_seen[identity_id] = last_seen
        self._lock_found_profiles()
        found = sorted(set(self.owner.values()))
        for profile_id, value in query(
            f"SELECT profile_id, value FROM {IDENTITY_TABLE} "  # noqa: S608 - table names from model metadata; values are parameters
            "WHERE profile_id = ANY(%b::bigint[]) AND kind = 'user_id'",
            [found],
        ):
            self.users.setdefault(profile_id, set()).add(value)
        weak = [ident for ident in identifiers if ident[0] in WEAK_KINDS and ident in self.owner]
        if weak:
            for kind, value, user_ids, blocked in query(
                "SELECT s.kind, s.value, s.user_ids::text, s.blocked "  # noqa: S608 - table names from model metadata; values are parameters
                f"FROM {SHARED_TABLE} s "
                "JOIN unnest(%b::text[], %b::text[]) AS u(k, v) ON s.kind = u.k AND s.value = u.v",
                [[k for k, _ in weak], [v for _, v in weak]],
            ):
                self.shared[(kind, value)] = SharedIdentifier(
                    kind=kind, value=value, user_ids=as_json(user_ids), blocked=blocked
                )

    def _lock_found_profiles(self) -> None:
        """Lock the profiles found; one merged meanwhile by someone else is followed to its
        survivor (which then owns the identifiers)."""
        pending = set(self.owner.values())
        locked: set[int] = set()
        while pending:
            merged_into = profiles_lock(list(pending))
            locked |= pending
            pending = set()
            for profile_id, survivor in merged_into.items():
                if survivor:
                    self.redirect[profile_id] = survivor
                    if survivor not in locked:
                        pending.add(survivor)
        for ident, profile_id in self.owner.items():
            self.owner[ident] = self.find(profile_id)

    # -- resolving ----------------------------------------------------------------------------

    def find(self, ref: int) -> int:
        while ref in self.redirect:
            ref = self.redirect[ref]
        return ref

    @staticmethod
    def age(ref: int) -> tuple[int, int]:
        """Older first: existing profiles by id, then placeholders in creation order."""
        return (0, ref) if ref > 0 else (1, -ref)

    def is_blocked(self, ident: Identifier) -> bool:
        shared = self.shared.get(ident)
        return bool(shared and shared.blocked)

    def resolve_all(self) -> None:
        for row in self.rows:
            row.profile = self.resolve(row)

    def resolve(self, row: Staged) -> int:
        user_id = next((v for k, v in row.identifiers if k == Identity.Kind.USER_ID), None)
        users: set[str] = {user_id} if user_id else set()
        group: list[int] = []
        for ident in row.identifiers:
            if ident not in self.owner or self.is_blocked(ident):
                continue
            ref = self.find(self.owner[ident])
            if ref in group:
                continue
            their_users = self.users.get(ref, set())
            if len(users | their_users) <= 1:
                group.append(ref)
                users |= their_users
            else:
                self._refuse_link(row, ident, ref, group, users, their_users)
        if not group:
            blocked_owner = next(
                (self.owner[i] for i in row.identifiers if i in self.owner and self.is_blocked(i)),
                None,
            )
            group = [self.find(blocked_owner)] if blocked_owner else [self._new_profile()]
        survivor = min(group, key=self.age)
        for other in group:
            if other != survivor:
                self._merge(survivor, other, row)
        if user_id:
            self.users.setdefault(survivor, set()).add(user_id)
        for ident in row.identifiers:
            if ident not in self.owner:
                self.owner[ident] = survivor
                self.new_identities[ident] = row
        return survivor

    def _new_profile(self) -> int:
        self.placeholders += 1
        return -self.placeholders

    def _merge(self, survivor: int, other: int, row: Staged) -> None:
        if other > 0:
            profile_merge(
                survivor_id=survivor,
                merged_id=other,
                reason=f"shared identifier in message {row.message_id}"[:255],
            )
        self.redirect[other] = survivor
        self.users.setdefault(survivor, set()).update(self.users.pop(other, set()))

    def _refuse_link(
        self,
        row: Staged,
        ident: Identifier,
        ref: int,
        group: list[int],
        users: set[str],
        their_users: set[str],
    ) -> None:
        """``ident`` links this message to a profile of another user: never merged
        automatically. A shared anonymous/device id counts the users it was seen with."""
        if ident[0] in WEAK_KINDS:
            shared = self.shared.get(ident) or SharedIdentifier(kind=ident[0], value=ident[1])
            seen = set(shared.user_ids) | their_users | users
            if seen != set(shared.user_ids):
                shared.user_ids = sorted(seen)
                shared.blocked = len(seen) > self.max_users
                self.shared[ident] = shared
                self.shared_changed.add(ident)
            if shared.blocked:
                return
        anchor = group[0] if group else None
        self.pending_conflicts.append((row, ident, ref, anchor, sorted(users), sorted(their_users)))

    # -- writing ------------------------------------------------------------------------------

    def flush(self) -> None:
        roots = {self.find(row.profile) for row in self.rows}
        state = self._profile_state([r for r in roots if r > 0])
        for row in self.rows:
            row.profile = self.find(row.profile)
            profile = state.get(row.profile)
            if profile is None:
                profile = state[row.profile] = _new_state()
            apply_message(profile, row)
        self._create_profiles(state)
        self._write_identities()
        self._write_events()
        self._update_profiles(state)
        self._write_conflicts()
        self._write_shared()

    def _profile_state(self, profile_ids: list[int]) -> dict[int, dict]:
        """Seen-at dates, and traits as stored JSON text: parsed only for a profile that gets
        an identify in this batch (most messages are page views and events)."""
        return {
            pid: {
                "id": pid,
                "traits": None,
                "trait_timestamps": None,
                "stored_traits": (traits, stamps),
                "first_seen_at": first,
                "last_seen_at": last,
                "stored_last_seen_at": last,
                "dirty": False,
                "traits_dirty": False,
            }
            for pid, traits, stamps, first, last in query(
                "SELECT id, traits::text, trait_timestamps::text, first_seen_at, last_seen_at "  # noqa: S608 - table names from model metadata; values are parameters
                f"FROM {PROFILE_TABLE} WHERE id = ANY(%b::bigint[])",
                [profile_ids],
            )
        }

    def _create_profiles(self, state: dict[int, dict]) -> None:
        """New profiles in one INSERT, with ids drawn from the sequence first so each
        placeholder knows its id (RETURNING does not promise the input order)."""
        placeholders = sorted((ref for ref in state if ref < 0), reverse=True)
        if not placeholders:
            return
        ids = [
            row[0]
            for row in query(
                f"SELECT nextval(pg_get_serial_sequence('{PROFILE_TABLE}', 'id')) "  # noqa: S608 - table names from model metadata; values are parameters
                "FROM generate_series(1, %b)",
                [len(placeholders)],
            )
        ]
        new = [state[ref] for ref in placeholders]
        query(
            f"INSERT INTO {PROFILE_TABLE} (id, traits, computed_traits, trait_timestamps, "  # noqa: S608 - table names from model metadata; values are parameters
            "first_seen_at, last_seen_at, created_at, updated_at) "
            "SELECT id, traits::jsonb, '{}', stamps::jsonb, first, last, now(), now() "
            "FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], "
            "%b::timestamptz[]) AS u(id, traits, stamps, first, last)",
            [
                ids,
                [_json(p["traits"]) for p in new],
                [_json(p["trait_timestamps"]) for p in new],
                [p["first_seen_at"] for p in new],
                [p["last_seen_at"] for p in new],
            ],
            fetch=False,
        )
        for ref, profile_id in zip(placeholders, ids, strict=True):
            self.redirect[ref] = profile_id
            state[ref]["created"] = True
        for row in self.rows:
            row.profile = self.find(row.profile)

    def _write_identities(self) -> None:
        new = list(self.new_identities.items())
        if new:
            query(
                f"INSERT INTO {IDENTITY_TABLE} (profile_id, kind, value, source_id, "  # noqa: S608 - table names from model metadata; values are parameters
                "first_seen_at, last_seen_at, created_at) "
                "SELECT p, k, v, s, t, t, now() FROM unnest(%b::bigint[], %b::text[], "
                "%b::text[], %b::bigint[], %b::timestamptz[]) AS u(p, k, v, s, t) "
                "ON CONFLICT (kind, value) DO NOTHING",
                [
                    [self.find(self.owner[ident]) for ident, _ in new],
                    [ident[0] for ident, _ in new],
                    [ident[1] for ident, _ in new],
                    [row.source_id for _, row in new],
                    [row.timestamp for _, row in new],
                ],
                fetch=False,
            )
        last_seen: dict[int, datetime] = {}
        for row in self.rows:
            for ident in row.identifiers:
                identity_id = self.identity_ids.get(ident)
                stored = self.identity_last_seen.get(identity_id)
                if stored and row.timestamp > stored + LAST_SEEN_GRANULARITY:
                    last_seen[identity_id] = max(
                        last_seen.get(identity_id, row.timestamp), row.timestamp
                    )
        if last_seen:
            query(
                f"UPDATE {IDENTITY_TABLE} i SET last_seen_at = u.t "  # noqa: S608 - table names from model metadata; values are parameters
                "FROM unnest(%b::bigint[], %b::timestamptz[]) AS u(id, t) "
                "WHERE i.id = u.id AND i.last_seen_at < u.t",
                [list(last_seen), list(last_seen.values())],
                fetch=False,
            )

    def _write_events(self) -> None:
        event_partitions_ensure_for([row.timestamp for row in self.rows])
        staged_ids = [row.id for row in self.rows]
        query(
            EVENTS_SQL,
            [
                staged_ids,
                staged_ids,
                [row.profile for row in self.rows],
                [first_of_kind(row, Identity.Kind.USER_ID) for row in self.rows],
                [first_of_kind(row, Identity.Kind.ANONYMOUS_ID) for row in self.rows],
            ],
            fetch=False,
        )

    def _update_profiles(self, state: dict[int, dict]) -> None:
        changed = [
            (ref, p) for ref, p in state.items() if ref > 0 and not p.get("created") and p["dirty"]
        ]
        if not changed:
            return
        # Traits are sent (and rewritten) only where an identify changed them.
        query(
            f"UPDATE {PROFILE_TABLE} p SET traits = coalesce(u.traits::jsonb, p.traits), "  # noqa: S608 - table names from model metadata; values are parameters
            "trait_timestamps = coalesce(u.stamps::jsonb, p.trait_timestamps), "
            "first_seen_at = u.first, last_seen_at = u.last, updated_at = now() "
            "FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], "
            "%b::timestamptz[]) AS u(id, traits, stamps, first, last) WHERE p.id = u.id",
            [
                [ref for ref, _ in changed],
                [_json(p["traits"]) if p["traits_dirty"] else None for _, p in changed],
                [_json(p["trait_timestamps"]) if p["traits_dirty"] else None for _, p in changed],
                [p["first_seen_at"] for _, p in changed],
                [p["last_seen_at"] for _, p in changed],
            ],
            fetch=False,
        )

    def _write_conflicts(self) -> None:
        conflicts = []
        for row, ident, ref, anchor, users, their_users in self.pending_conflicts:
            mine = self.find(anchor) if anchor is not None else row.profile
            theirs = self.find(ref)
            if mine == theirs or self.is_blocked(ident):
                continue
            older, newer = sorted((mine, theirs))
            conflicts.append(
                MergeConflict(
                    profile_id=older,
                    other_profile_id=newer,
                    identifier_kind=ident[0],
                    identifier_value=ident[1],
                    reason=(
                        f"{ident[0]} links user ids {', '.join(users) or '-'} and "
                        f"{', '.join(their_users)}"
                    )[:255],
                    message_id=row.message_id,
                )
            )
        MergeConflict.objects.bulk_create(conflicts, ignore_conflicts=True)

    def _write_shared(self) -> None:
        for ident in sorted(self.shared_changed):
            shared = self.shared[ident]
            SharedIdentifier.objects.update_or_create(
                kind=ident[0],
                value=ident[1],
                defaults={"user_ids": shared.user_ids, "blocked": shared.blocked},
            )


def first_of_kind(row: Staged, kind: str) -> str:
    return next((value for k, value in row.identifiers if k == kind), "")


def _new_state() -> dict:
    return {
        "traits": {},
        "trait_timestamps": {},
        "first_seen_at": None,
        "last_seen_at": None,
        "dirty": True,
        "traits_dirty": True,
    }


def _json(value: dict) -> str:
    return orjson.dumps(value).decode()


def apply_message(profile: dict, row: Staged) -> None:
    """Seen-at dates, and identify traits by event time: a trait changes only if this event is
    not older than the one that set it. Traits under ``$set_once`` are set only when absent."""
    first, last = profile["first_seen_at"], profile["last_seen_at"]
    if first is None or row.timestamp < first:
        profile["first_seen_at"] = row.timestamp
        profile["dirty"] = True
    if last is None or row.timestamp > last:
        profile["last_seen_at"] = row.timestamp
        stored = profile.get("stored_last_seen_at")
        if stored is None or row.timestamp > stored + LAST_SEEN_GRANULARITY:
            profile["dirty"] = True
    if row.type != Event.Type.IDENTIFY:
        return
    traits = identify_traits(row.payload)
    if not traits:
        return
    if profile["traits"] is None:
        stored_traits, stored_stamps = profile["stored_traits"]
        profile["traits"], profile["trait_timestamps"] = (
            as_json(stored_traits),
            as_json(stored_stamps),
        )
    at = _iso(row.timestamp)
    stamp = {"at": at, "message_id": row.message_id, "source_id": row.source_id}
    current, stamps = profile["traits"], profile["trait_timestamps"]
    for key, value in traits.items():
        if key == SET_ONCE_KEY:
            continue
        if stamps.get(key, {}).get("at", "") <= at:
            current[key] = value
            stamps[key] = stamp
            profile["dirty"] = profile["traits_dirty"] = True
    set_once = traits.get(SET_ONCE_KEY)
    if isinstance(set_once, dict):
        for key, value in set_once.items():
            if key not in current:
                current[key] = value
                stamps[key] = {**stamp, "set_once": True}
                profile["dirty"] = profile["traits_dirty"] = True


def identify_traits(payload: dict) -> dict:
    """Segment sends identify traits at the root, RudderStack in ``context.traits``."""
    traits = payload.get("traits")
    if isinstance(traits, dict) and traits:
        return traits
    context = payload.get("context")
    traits = context.get("traits") if isinstance(context, dict) else None
    return traits if isinstance(traits, dict) else {}
