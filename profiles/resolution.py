"""Identity resolution: identifiers of a message, profile merges (with undo) and the review queue
of merges a rule forbade. The bulk processing of collected messages lives in profiles.processing.

Merge rules: the oldest profile survives; two different user ids never merge automatically; an
anonymous or device id seen with more than CDPHUB_SHARED_ID_MAX_USERS user ids is no merge key.
Such cases become a MergeConflict for a person to approve (merge) or reject (keep apart)."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from cdphub.bulk import objects_insert
from cdphub.sql import query
from profiles import merge_followers
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
)
from profiles.normalize import InvalidIdentifier, normalize_identifier

Kind = Identity.Kind
Identifier = tuple[str, str]
# Order in which identifiers decide which profile a message belongs to, strongest first.
KIND_PRIORITY = (
    Kind.USER_ID,
    Kind.EMAIL,
    Kind.PHONE,
    Kind.EXTERNAL,
    Kind.CRM_CONTACT,
    Kind.DEVICE_ID,
    Kind.ANONYMOUS_ID,
)
# Identifiers of a browser or device rather than a person: shared devices make them unsafe.
WEAK_KINDS = frozenset({Kind.ANONYMOUS_ID, Kind.DEVICE_ID})


class MergeRefused(ValueError):
    """A merge or undo that cannot be done; the message says why."""


def message_identifiers(
    payload: dict,
    normalize=normalize_identifier,
    known_user_ids: Container[str] = frozenset(),
) -> list[tuple[str, str]]:
    """The normalised identifiers of a collected message, strongest first; junk is dropped.
    ``normalize`` may be a memoised normaliser (a batch repeats the same values many times).
    The ``previousId`` of an alias is a user id if it is among ``known_user_ids``, else the
    anonymous id used before sign-up (the spec allows either)."""
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    traits = payload.get("traits") if isinstance(payload.get("traits"), dict) else {}
    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    raw: list[tuple[str, object]] = [
        (Kind.USER_ID, payload.get("userId")),
        (Kind.ANONYMOUS_ID, payload.get("anonymousId")),
        (Kind.EMAIL, traits.get("email") or context_traits.get("email")),
        (Kind.PHONE, traits.get("phone") or context_traits.get("phone")),
        (Kind.DEVICE_ID, device.get("id")),
    ]
    previous_id = alias_previous_id(payload, normalize)
    if previous_id is not None:
        kind = Kind.USER_ID if previous_id in known_user_ids else Kind.ANONYMOUS_ID
        raw.append((kind, previous_id))
    external_ids = context.get("externalIds")
    if isinstance(external_ids, list):
        for external in external_ids:
            if isinstance(external, dict) and external.get("id") not in (None, ""):
                raw.append((Kind.EXTERNAL, f"{external.get('type') or 'id'}:{external['id']}"))
    identifiers: dict[tuple[str, str], None] = {}
    for kind, value in raw:
        if value in (None, ""):
            continue
        try:
            identifiers[(str(kind), normalize(kind, value))] = None
        except InvalidIdentifier:
            continue
    return sorted(identifiers, key=lambda pair: KIND_PRIORITY.index(pair[0]))


def alias_previous_id(payload: dict, normalize=normalize_identifier) -> str | None:
    """The normalised ``previousId`` of an alias message (user and anonymous ids normalise
    alike), or None."""
    if payload.get("type") != "alias" or payload.get("previousId") in (None, ""):
        return None
    try:
        return normalize(Kind.ANONYMOUS_ID, payload["previousId"])
    except InvalidIdentifier:
        return None


def known_user_ids(payloads: Iterable[dict], normalize=normalize_identifier) -> frozenset[str]:
    """The ``previousId`` values of the alias messages among ``payloads`` that are user ids: a
    user id stored already or sent by a message of the same batch."""
    payloads = list(payloads)
    previous = {alias_previous_id(payload, normalize) for payload in payloads} - {None}
    if not previous:
        return frozenset()
    in_batch = set()
    for payload in payloads:
        try:
            in_batch.add(normalize(Kind.USER_ID, payload.get("userId")))
        except InvalidIdentifier:
            continue
    found = in_batch & previous
    stored = query(
        "SELECT value FROM profiles_identity WHERE kind = %b AND value = ANY(%b::text[])",
        [str(Kind.USER_ID), sorted(previous - found)],
    )
    return frozenset(found | {value for (value,) in stored})


# --- Finding and creating profiles by identifiers ----------------------------------------------


def identifier_lock_key(identifier: Identifier) -> int:
    """The advisory lock key of one normalised identifier, the same for every path."""
    digest = hashlib.blake2b(f"{identifier[0]}:{identifier[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def identifiers_lock(identifiers: Iterable[Identifier]) -> None:
    """Wait for the transaction-level advisory locks of these identifiers, in key order (so two
    callers never wait on each other in a cycle). Event processing try-locks the same keys and
    leaves a message for later rather than wait, so it never blocks on a caller of this."""
    keys = sorted({identifier_lock_key(identifier) for identifier in identifiers})
    if keys:
        query(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(%b::bigint[]) AS k "
            "ORDER BY k) AS ordered",
            [keys],
        )


@dataclass
class Resolved:
    """What ``profiles_resolve`` found or made: a profile id per group (in the given order), and
    the ids of the profiles and identities it created (an import logs them, for revert)."""

    profile_ids: list[int] = field(default_factory=list)
    created_profiles: list[int] = field(default_factory=list)
    created_identities: list[int] = field(default_factory=list)


def profiles_resolve(
    groups: Sequence[Sequence[Identifier]],
    *,
    new_traits: Sequence[dict],
    linked: Sequence[int | None] = (),
    source=None,
) -> Resolved:
    """The profile of each group of one person's normalised identifiers (a CRM contact's id,
    e-mail and phone), strongest first: the owner of the first identifier that has one, else the
    group's ``linked`` profile, else a new profile with the group's ``new_traits``. Identifiers
    the chosen profile does not hold yet are added to it. Two groups sharing a new identifier get
    one new profile. Set-based: one lookup and two inserts for thousands of groups.

    The identifiers are locked first with the keys event processing uses, so this and processing
    never both create a profile for one new person. Identifiers owned by different profiles are
    not merged here: a CRM record is typed by hand, and merges of known people go through
    review (a conflict, or the CRM's duplicates)."""
    identifiers = sorted({identifier for group in groups for identifier in group})
    identifiers_lock(identifiers)
    stored = _identity_owners(identifiers)
    owner = dict(stored)  # and, as groups are resolved, the identifiers they claim
    live_linked = _live_profiles({pk for pk in linked if pk})
    chosen: list[int] = []  # a profile id, or a negative placeholder for a new profile
    new: dict[int, dict] = {}
    for index, group in enumerate(groups):
        profile_id = next((owner[i] for i in group if i in owner), None)
        if profile_id is None and index < len(linked) and linked[index] in live_linked:
            profile_id = linked[index]
        if profile_id is None:
            profile_id = -(len(new) + 1)
            new[profile_id] = new_traits[index]
        for identifier in group:
            owner.setdefault(identifier, profile_id)
        chosen.append(profile_id)
    created = _profiles_create(new)
    chosen = [created.get(pk, pk) for pk in chosen]
    claimed = {
        identifier: created.get(pk, pk)
        for identifier, pk in owner.items()
        if identifier not in stored
    }
    identities = _identities_create(claimed, source)
    return Resolved(chosen, sorted(created.values()), identities)


def _identity_owners(identifiers: list[Identifier]) -> dict[Identifier, int]:
    if not identifiers:
        return {}
    rows = query(
        "SELECT i.kind, i.value, i.profile_id FROM profiles_identity i "
        "JOIN unnest(%b::text[], %b::text[]) AS u(k, v) ON i.kind = u.k AND i.value = u.v",
        [[kind for kind, _ in identifiers], [value for _, value in identifiers]],
    )
    return {(kind, value): profile_id for kind, value, profile_id in rows}


def _live_profiles(profile_ids: set[int]) -> set[int]:
    if not profile_ids:
        return set()
    return set(
        Profile.objects.filter(pk__in=profile_ids, merged_into__isnull=True).values_list(
            "pk", flat=True
        )
    )


def _profiles_create(traits_by_placeholder: dict[int, dict]) -> dict[int, int]:
    """New profiles for the placeholders; returns placeholder -> profile id."""
    now = timezone.now()
    placeholders = sorted(traits_by_placeholder, reverse=True)
    profiles = [
        Profile(traits=traits_by_placeholder[ref], first_seen_at=now, last_seen_at=now)
        for ref in placeholders
    ]
    objects_insert(Profile, profiles)
    return {ref: profile.pk for ref, profile in zip(placeholders, profiles, strict=True)}


def _identities_create(claimed: dict[Identifier, int], source) -> list[int]:
    now = timezone.now()
    identities = [
        Identity(
            profile_id=profile_id,
            kind=kind,
            value=value,
            source=source,
            first_seen_at=now,
            last_seen_at=now,
        )
        for (kind, value), profile_id in sorted(claimed.items())
    ]
    return objects_insert(Identity, identities)


# --- Merges -----------------------------------------------------------------------------------


def profiles_lock(profile_ids: list[int]) -> dict[int, int | None]:
    """Row locks on profiles, in id order (so two transactions never wait on each other in a
    cycle); returns each profile's merged_into id."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, merged_into_id FROM profiles_profile WHERE id = ANY(%s::bigint[]) "
            "ORDER BY id FOR NO KEY UPDATE",
            [sorted(set(profile_ids))],
        )
        return dict(cursor.fetchall())


def _traits_merge(survivor: Profile, merged: Profile) -> dict:
    """Traits of the merged profile that are newer (or missing) win; returns what they replaced."""
    replaced = {}
    for key, value in (merged.traits or {}).items():
        mine = (survivor.trait_timestamps or {}).get(key, {}).get("at", "")
        theirs = (merged.trait_timestamps or {}).get(key, {}).get("at", "")
        if key in survivor.traits and mine >= theirs:
            continue
        replaced[key] = {
            "had": key in survivor.traits,
            "old": survivor.traits.get(key),
            "old_at": (survivor.trait_timestamps or {}).get(key),
            "new": value,
        }
        survivor.traits[key] = value
        if key in (merged.trait_timestamps or {}):
            survivor.trait_timestamps[key] = merged.trait_timestamps[key]
    return replaced


@transaction.atomic
def profile_merge(*, survivor_id: int, merged_id: int, reason: str, merged_by=None) -> ProfileMerge:
    """Move everything of ``merged`` to ``survivor`` and keep an audit row listing what moved, so
    the merge can be undone. The merged profile stays, pointing to the survivor."""
    if survivor_id == merged_id:
        raise MergeRefused("a profile cannot be merged into itself")
    merged_into = profiles_lock([survivor_id, merged_id])
    if len(merged_into) != 2:
        raise MergeRefused("one of the profiles does not exist")
    if merged_into[survivor_id] or merged_into[merged_id]:
        raise MergeRefused("one of the profiles was already merged into another profile")
    survivor = Profile.objects.get(pk=survivor_id)
    merged = Profile.objects.get(pk=merged_id)
    moved: dict = {}
    for follower in merge_followers.followers():
        moved.update(follower.merge(survivor_id, merged_id))
    moved["traits_replaced"] = _traits_merge(survivor, merged)
    survivor.first_seen_at = min(
        (t for t in (survivor.first_seen_at, merged.first_seen_at) if t), default=None
    )
    survivor.last_seen_at = max(
        (t for t in (survivor.last_seen_at, merged.last_seen_at) if t), default=None
    )
    survivor.save(
        update_fields=["traits", "trait_timestamps", "first_seen_at", "last_seen_at", "updated_at"]
    )
    Profile.objects.filter(pk=merged_id).update(
        merged_into_id=survivor_id, updated_at=timezone.now()
    )
    return ProfileMerge.objects.create(
        survivor_id=survivor_id,
        merged_id=merged_id,
        reason=reason[:255],
        moved=moved,
        merged_by=merged_by if getattr(merged_by, "pk", None) else None,
    )


@transaction.atomic
def profiles_merge_manual(*, profile_ids: list[int], merged_by=None) -> list[ProfileMerge]:
    """A person's decision: merge these profiles (whatever their user ids) into the oldest."""
    from profiles.selectors import profile_resolve

    resolved = sorted({p.pk for p in (profile_resolve(pid) for pid in profile_ids) if p})
    if len(resolved) < 2:
        raise MergeRefused("give at least two different, existing profiles")
    survivor_id, *others = resolved
    return [
        profile_merge(
            survivor_id=survivor_id, merged_id=other, reason="manual merge", merged_by=merged_by
        )
        for other in others
    ]


# An event belongs where its strongest id lives: its user id if it had one, else its anonymous id.
LATER_EVENTS_SQL = f"""
    UPDATE {Event._meta.db_table} e SET profile_id = %(merged)s
    FROM {Identity._meta.db_table} i
    WHERE e.profile_id = %(survivor)s
      AND i.profile_id = %(merged)s
      AND (
        (e.user_id <> '' AND i.kind = 'user_id' AND i.value = e.user_id)
        OR (e.user_id = '' AND e.anonymous_id <> ''
            AND i.kind = 'anonymous_id' AND i.value = e.anonymous_id)
      )
"""  # noqa: S608 - table names from model metadata


def _later_events_move_back(survivor_id: int, merged_id: int) -> int:
    """Events that arrived after the merge through an id that now goes back to the merged
    profile (a visit with only that person's anonymous id, say) follow it; events that carried
    the survivor's user id stay."""
    with connection.cursor() as cursor:
        cursor.execute(LATER_EVENTS_SQL, {"merged": merged_id, "survivor": survivor_id})
        return cursor.rowcount


@transaction.atomic
def profile_merge_undo(*, merge: ProfileMerge, undone_by=None) -> ProfileMerge:
    """Split a merge from its audit row: the rows it moved go back to the merged profile (those
    still on the survivor), replaced consent states and traits get their old values back.
    Events that arrived after the merge go with the profile that owns their user id (or, without
    one, their anonymous id) once the identities are back where they were."""
    merge = ProfileMerge.objects.select_for_update().get(pk=merge.pk)
    if merge.undone_at:
        raise MergeRefused("this merge was already undone")
    merged_into = profiles_lock([merge.survivor_id, merge.merged_id])
    if merged_into.get(merge.merged_id) != merge.survivor_id:
        raise MergeRefused("the merged profile no longer points to the survivor")
    if merged_into.get(merge.survivor_id):
        raise MergeRefused("the survivor was merged again since: undo that merge first")
    moved = merge.moved or {}
    for follower in merge_followers.followers():
        follower.undo(moved, merge.survivor_id, merge.merged_id)
    _later_events_move_back(merge.survivor_id, merge.merged_id)
    survivor = Profile.objects.get(pk=merge.survivor_id)
    for key, change in moved.get("traits_replaced", {}).items():
        if survivor.traits.get(key) != change["new"]:
            continue  # changed since the merge: the newer value stays
        if change["had"]:
            survivor.traits[key] = change["old"]
            survivor.trait_timestamps[key] = change["old_at"]
        else:
            survivor.traits.pop(key, None)
            survivor.trait_timestamps.pop(key, None)
    survivor.save(update_fields=["traits", "trait_timestamps", "updated_at"])
    Profile.objects.filter(pk=merge.merged_id).update(merged_into=None, updated_at=timezone.now())
    merge.undone_at = timezone.now()
    merge.save(update_fields=["undone_at"])
    MergeConflict.objects.filter(merge=merge).update(
        status=MergeConflict.Status.KEPT_APART, decided_by=undone_by, decided_at=merge.undone_at
    )
    return merge


# --- The review queue -------------------------------------------------------------------------


@transaction.atomic
def merge_conflict_approve(*, conflict: MergeConflict, decided_by=None) -> MergeConflict:
    """Approve: merge the two profiles (the oldest survives)."""
    conflict = MergeConflict.objects.select_for_update().get(pk=conflict.pk)
    if conflict.status != MergeConflict.Status.OPEN:
        raise MergeRefused("this conflict was already decided")
    merges = profiles_merge_manual(
        profile_ids=[conflict.profile_id, conflict.other_profile_id], merged_by=decided_by
    )
    conflict.status = MergeConflict.Status.MERGED
    conflict.merge = merges[0]
    conflict.decided_by = decided_by if getattr(decided_by, "pk", None) else None
    conflict.decided_at = timezone.now()
    conflict.save(update_fields=["status", "merge", "decided_by", "decided_at"])
    return conflict


@transaction.atomic
def merge_conflict_reject(*, conflict: MergeConflict, decided_by=None) -> MergeConflict:
    """Reject: keep the profiles apart; the pair is not raised again."""
    conflict = MergeConflict.objects.select_for_update().get(pk=conflict.pk)
    if conflict.status != MergeConflict.Status.OPEN:
        raise MergeRefused("this conflict was already decided")
    conflict.status = MergeConflict.Status.KEPT_APART
    conflict.decided_by = decided_by if getattr(decided_by, "pk", None) else None
    conflict.decided_at = timezone.now()
    conflict.save(update_fields=["status", "decided_by", "decided_at"])
    return conflict


def shared_id_max_users() -> int:
    return settings.CDPHUB_SHARED_ID_MAX_USERS
