from __future__ import annotations

from django.contrib.postgres.search import TrigramWordDistance
from django.db.models import Q, QuerySet

from cdphub.paginators import fast_count
from profiles.models import Identity, Profile, ProfileSearchText
from profiles.panels import Viewer, panels_for
from profiles.resolution.normalize import lookup_candidates, lookup_condition

# Shorter parts of a name would match most people, and trigrams need three characters.
PARTIAL_SEARCH_MIN_LENGTH = 3


def profile_resolve(profile_id: int) -> Profile | None:
    """The profile with this id, following merges to the surviving profile."""
    profile = Profile.objects.filter(pk=profile_id).first()
    seen = set()
    while profile is not None and profile.merged_into_id and profile.pk not in seen:
        seen.add(profile.pk)
        profile = Profile.objects.filter(pk=profile.merged_into_id).first()
    return profile


def profile_overview(profile: Profile, *, pii: bool, user) -> dict:
    """The header of the profile 360 page and its panels, each panel one query, personal data
    masked unless ``pii``. Every panel, the hub's own included, comes from the panel registry
    (``profiles.panels``): other apps' data is never read here."""
    viewer = Viewer(user=user, pii=pii)
    panels = panels_for(profile, viewer)
    return {
        "name": viewer.shown(profile.display_name)
        if profile.display_name != f"Profile {profile.pk}"
        else f"Profile {profile.pk}",
        "event_count": fast_count(profile.events.all()),
        "has_merges": any(panel["key"] == "merges" and panel["data"] for panel in panels),
        "panels": panels,
    }


def profile_search_condition(term: str, *, personal: bool) -> Q:
    """A ``Q`` for the profiles found by ``term``: an identifier of any kind (exactly, through
    the identity index), a profile id, and, for viewers of personal data, any part of a name or
    e-mail of at least three characters (through the trigram index on ``ProfileSearchText``).
    Without ``personal`` nothing personal is looked up: finding a profile by a name would
    confirm the name to someone who may not see it."""
    term = term.strip()
    ids = Identity.objects.none().values("profile_id")
    if lookup_candidates(term, personal=personal):
        ids = Identity.objects.filter(lookup_condition(term, personal=personal))
        ids = ids.order_by().values("profile_id")
    if personal and len(term) >= PARTIAL_SEARCH_MIN_LENGTH:
        # A union of two index look-ups: an OR of both conditions would scan every profile.
        named = Profile.objects.alias(text=ProfileSearchText("traits"))
        ids = ids.union(named.filter(text__contains=search_words(term)).order_by().values("pk"))
    found = Q(pk__in=ids)
    if term.isdigit() and len(term) < 19:
        found |= Q(pk=int(term))
    return found


def profiles_similar(term: str, *, limit: int = 5) -> QuerySet[Profile]:
    """For "no exact match, did you mean ...": the profiles whose name or e-mail holds a word
    most like ``term`` (a typo, a missing letter), closest first. Personal data: only for
    viewers who may see it."""
    words = search_words(term)
    if len(words) < PARTIAL_SEARCH_MIN_LENGTH:
        return Profile.objects.none()
    similar = (
        Profile.objects.alias(text=ProfileSearchText("traits"))
        .filter(text__trigram_word_similar=words, merged_into__isnull=True)
        .order_by(TrigramWordDistance(words, "text"), "pk")
    )
    return similar[:limit]


def search_words(term: str) -> str:
    """A search term as ``ProfileSearchText`` holds it: lower case, single spaces."""
    return " ".join(term.lower().split())
