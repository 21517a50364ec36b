from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.postgres.search import TrigramWordDistance
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import StrIndex
from django.utils.timezone import localtime

from cdphub.paginators import fast_count
from cdphub.pii import mask_properties
from profiles.models import (
    BUILT_IN_COMPUTED_KEYS,
    ComputedTrait,
    Identity,
    Profile,
    ProfileSearchText,
)
from profiles.panels import Viewer, panels_for
from profiles.resolution.normalize import lookup_candidates, lookup_condition

# Shorter parts of a name would match most people, and trigrams need three characters.
PARTIAL_SEARCH_MIN_LENGTH = 3
# Up to this many people found by a part of a name or e-mail are listed by their ids.
PARTIAL_MATCHES_READ_ONCE = 1000
SIMILAR_CANDIDATES = 500


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


def computed_trait_names() -> list[tuple[str, str]]:
    """(key, label) of every computed trait: the built-in ones, then those defined."""
    built_in = [(key, key.replace("_", " ")) for key in BUILT_IN_COMPUTED_KEYS]
    return [*built_in, *ComputedTrait.objects.order_by("name").values_list("key", "name")]


def profile_search_condition(term: str, *, personal: bool) -> Q:
    """A ``Q`` for the profiles found by ``term``. Exact matches first: an identifier of any
    kind (through the identity index) or a profile id; an e-mail typed whole finds its owner,
    not every address that contains it. Failing those, for viewers of personal data, any part
    of a name or e-mail of at least three characters (through the trigram index on
    ``ProfileSearchText``). Without ``personal`` nothing personal is looked up: finding a
    profile by a name would confirm the name to someone who may not see it."""
    term = term.strip()
    exact = exact_matches(term, personal=personal)
    if exact:
        return Q(pk__in=exact)
    if personal and len(term) >= PARTIAL_SEARCH_MIN_LENGTH:
        named = profiles_named(term).order_by().values_list("pk", flat=True)
        # A list counts its rows, then reads a page: two scans of the trigram index. A term
        # that finds few people is read once, here, and both then look up ids. The longer a
        # term, the more trigrams the index intersects and the fewer people it finds, so the
        # scans this saves are the costly ones.
        found = list(named[: PARTIAL_MATCHES_READ_ONCE + 1])
        if len(found) <= PARTIAL_MATCHES_READ_ONCE:
            return Q(pk__in=found)
        return Q(pk__in=named)
    return Q(pk__in=[])


def profiles_named(term: str) -> QuerySet[Profile]:
    """Profiles whose name or e-mail holds ``term`` (through the trigram index).

    The index finds rows by every trigram of what it is given, and the trigrams of a domain
    (``@gmail.com``) are in a large share of all rows: reading them costs more than all the
    rest. A term with an address's local part is therefore looked up by that part, and the
    rows found are checked for the whole term (``strpos``, which no index answers)."""
    words = search_words(term)
    searchable = Profile.objects.alias(text=ProfileSearchText("traits"))
    local_part, at, _ = words.partition("@")
    if at and len(local_part) >= PARTIAL_SEARCH_MIN_LENGTH:
        found = searchable.filter(text__contains=local_part)
        return found.alias(at=StrIndex("text", Value(words))).filter(at__gt=0)
    return searchable.filter(text__contains=words)


def exact_matches(term: str, *, personal: bool) -> list[int]:
    """The profiles ``term`` names exactly: by an identifier, or as a profile id."""
    found = set()
    if lookup_candidates(term, personal=personal):
        owners = Identity.objects.filter(lookup_condition(term, personal=personal))
        found.update(owners.values_list("profile_id", flat=True))
    if term.isdigit() and len(term) < 19 and Profile.objects.filter(pk=int(term)).exists():
        found.add(int(term))
    return sorted(found)


def profiles_similar(term: str, *, limit: int = 5) -> QuerySet[Profile]:
    """For "no exact match, did you mean ...": the profiles whose name or e-mail holds a word
    most like ``term`` (a typo, a missing letter), closest first. Personal data: only for
    viewers who may see it. The closest are picked among the first ``SIMILAR_CANDIDATES``
    found, so that a word most people share costs no more than a rare one."""
    words = search_words(term)
    if len(words) < PARTIAL_SEARCH_MIN_LENGTH:
        return Profile.objects.none()
    searchable = Profile.objects.alias(text=ProfileSearchText("traits"))
    candidates = searchable.filter(text__trigram_word_similar=words, merged_into__isnull=True)
    closest = searchable.filter(pk__in=candidates.order_by().values("pk")[:SIMILAR_CANDIDATES])
    return closest.order_by(TrigramWordDistance(words, "text"), "pk")[:limit]


def search_words(term: str) -> str:
    """A search term as ``ProfileSearchText`` holds it: lower case, single spaces."""
    return " ".join(term.lower().split())


# --- The activity feed of a profile's timeline ----------------------------------------------------

# Without a session id from the client, a visit ends after this long without an event: the
# inactivity timeout web analytics tools count visits with.
SESSION_GAP = timedelta(minutes=30)

# Segment's e-commerce spec names these events: they get the shopping icon.
COMMERCE_PREFIXES = ("Order ", "Product ", "Products ", "Checkout ", "Cart ", "Payment ", "Coupon ")


@dataclass
class FeedGroup:
    """A day or a session of the feed, its events newest first."""

    label: str
    entries: list[dict] = field(default_factory=list)


def timeline_feed(events, *, group_by: str, pii: bool) -> list[FeedGroup]:
    """``events`` (newest first) as the feed of the profile page: each with its icon, a title a
    person reads and its properties (masked unless ``pii``), grouped by day or by session (the
    events sharing the client's ``context.sessionId``, else those less than 30 minutes apart)."""
    groups: list[FeedGroup] = []
    newer = None
    for event in events:
        if newer is None or not same_group(newer, event, group_by):
            groups.append(FeedGroup(label=""))
        groups[-1].entries.append(feed_entry(event, pii=pii))
        newer = event
    for group in groups:
        group.label = feed_group_label(group, group_by)
    return groups


def same_group(newer, older, group_by: str) -> bool:
    if group_by != "session":
        return localtime(newer.timestamp).date() == localtime(older.timestamp).date()
    newer_session, older_session = session_id(newer), session_id(older)
    if newer_session is not None and older_session is not None:
        return newer_session == older_session
    return newer.timestamp - older.timestamp <= SESSION_GAP


def session_id(event):
    context = event.context if isinstance(event.context, dict) else {}
    return context.get("sessionId")


def feed_entry(event, *, pii: bool) -> dict:
    properties = event.properties if isinstance(event.properties, dict) else {}
    return {
        "event": event,
        "icon": feed_icon(event),
        "title": feed_title(event),
        "properties": properties if pii else mask_properties(properties),
    }


def feed_icon(event) -> str:
    if event.type == "track" and event.name.startswith(COMMERCE_PREFIXES):
        return "commerce"
    return event.type


def feed_title(event) -> str:
    titles = {
        "identify": "Identified",
        "group": "Joined a group",
        "alias": "Linked an identity",
        "page": "Viewed a page",
        "screen": "Viewed a screen",
    }
    if event.type in ("track", "page", "screen") and event.name:
        return event.name
    return titles.get(event.type, event.type)


def feed_group_label(group: FeedGroup, group_by: str) -> str:
    newest = localtime(group.entries[0]["event"].timestamp)
    oldest = localtime(group.entries[-1]["event"].timestamp)
    count = len(group.entries)
    events = f"{count} event{'s' if count != 1 else ''}"
    if group_by != "session":
        return f"{newest:%A %-d %B %Y} · {events}"
    return f"Session on {oldest:%a %-d %b %Y}, {oldest:%H:%M}–{newest:%H:%M} · {events}"
