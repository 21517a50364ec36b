"""The one resolver every path other than event processing uses (CRM contacts, imports, web
forms): identifiers in, a profile per person out, created when missing, under the identifier
locks event processing takes, so two paths meeting one new person make one profile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from cdphub.bulk import values_insert
from cdphub.sql import query
from profiles.models import Identity, Profile
from profiles.resolution.identifiers import Identifier, identifiers_lock

IDENTITY_TABLE = Identity._meta.db_table


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
        f"SELECT i.kind, i.value, i.profile_id FROM {IDENTITY_TABLE} i "  # noqa: S608 - table names from model metadata; values are parameters
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
    """New profiles for the placeholders; returns placeholder -> profile id. Written from
    values, not model instances: imports create tens of thousands."""
    now = timezone.now()
    placeholders = sorted(traits_by_placeholder, reverse=True)
    rows = [
        {"traits": traits_by_placeholder[ref], "first_seen_at": now, "last_seen_at": now}
        for ref in placeholders
    ]
    return dict(zip(placeholders, values_insert(Profile, rows), strict=True))


def _identities_create(claimed: dict[Identifier, int], source) -> list[int]:
    now = timezone.now()
    source_id = source.pk if source is not None else None
    rows = [
        {
            "profile_id": profile_id,
            "kind": kind,
            "value": value,
            "source_id": source_id,
            "first_seen_at": now,
            "last_seen_at": now,
        }
        for (kind, value), profile_id in sorted(claimed.items())
    ]
    return values_insert(Identity, rows)
