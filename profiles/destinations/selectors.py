"""Who may receive what, asked at send time: consent can be withdrawn, a person erased or
merged while a delivery waits in the outbox."""

from __future__ import annotations

from collections.abc import Iterable

from cdphub.sql import any_of
from consent.selectors import profiles_with_consent
from profiles.models import Destination, Profile

MERGE_CHAIN_LIMIT = 20


def survivors(profile_ids: Iterable[int]) -> dict[int, int]:
    """Each profile id followed through merges to its surviving profile; an id whose profile
    no longer exists (an erased person) is left out. One query per merge level."""
    current = {pk: pk for pk in set(profile_ids)}
    found: dict[int, int] = {}
    for _ in range(MERGE_CHAIN_LIMIT):
        if not current:
            break
        merged_into = dict(
            Profile.objects.filter(pk__in=any_of(set(current.values()))).values_list(
                "pk", "merged_into"
            )
        )
        following = {}
        for original, pk in current.items():
            if pk not in merged_into:
                continue
            if merged_into[pk] is None:
                found[original] = pk
            else:
                following[original] = merged_into[pk]
        current = following
    return found


def deliverable_profiles(destination: Destination, profile_ids: Iterable[int]) -> dict[int, int]:
    """Of these profile ids, those whose person may receive the destination's data now (the
    one consent selector, for the destination's purpose), each with its surviving profile."""
    survivor_of = survivors(profile_ids)
    allowed = set(
        profiles_with_consent(destination.purpose_code, among=survivor_of.values()).values_list(
            "pk", flat=True
        )
    )
    return {original: pk for original, pk in survivor_of.items() if pk in allowed}
