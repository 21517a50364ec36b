"""``demo_data_seed``: the demo data set of all four apps, reproducible from a fixed seed."""

from __future__ import annotations

import random
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from cdphub.demo.bulk import rows_copy
from cdphub.demo.consent import ConsentGenerator
from cdphub.demo.crm import CrmGenerator
from cdphub.demo.dmp import DmpGenerator
from cdphub.demo.people import PeopleGenerator, Person
from profiles.models import Segment, SegmentMembership, Source
from profiles.segments.membership import segment_refresh
from profiles.services import source_create

DEMO_SOURCES = {
    "website": ("Demo website", Source.Kind.WEBSITE),
    "app": ("Demo app", Source.Kind.APP),
    "shop": ("Demo shop", Source.Kind.SHOP),
    "pos": ("Demo POS", Source.Kind.POS),
}
# The demo data exists when this source does: seeding again is a no-op.
MARKER_SOURCE = DEMO_SOURCES["website"][0]
DEFAULT_SEED = 2026


def demo_data_exists() -> bool:
    return Source.objects.filter(name=MARKER_SOURCE).exists()


@transaction.atomic
def demo_data_seed(*, profiles: int, seed: int = DEFAULT_SEED, now: datetime | None = None) -> dict:
    """Create the demo data set in one transaction; returns row counts per kind, or ``{}`` if
    the demo data already exists (so running it twice never duplicates anything)."""
    if profiles < 1:
        raise ValueError("profiles must be at least 1")
    # Serialise concurrent seeders: the second one waits, then sees the marker and stops.
    Source.objects.select_for_update().filter(name=MARKER_SOURCE).exists()
    if demo_data_exists():
        return {}
    rng = random.Random(seed)
    now = now or timezone.now()
    sources = {
        key: source_create(name=name, kind=kind)[0].pk for key, (name, kind) in DEMO_SOURCES.items()
    }
    generator = PeopleGenerator(rng, now, sources)
    people = generator.people_make(profiles)
    counts = {"events": generator.events_write(people)}
    counts["profiles"] = generator.profiles_write(people)
    counts["identities"] = generator.identities_write(people)
    segments, counts["segment_members"] = segments_seed(people, now)
    consent = ConsentGenerator(rng, now)
    consent_counts = consent.write(people)
    crm_counts = CrmGenerator(rng, now, sources).write(people)
    counts["identities"] += crm_counts.pop("identities")
    dmp_counts = DmpGenerator(rng, now).write(
        people, consent.granted, lookalike_seed=segments["Demo: outdoor shoppers"]
    )
    counts["example_segment_members"] = example_segment_seed()
    return {**counts, **consent_counts, **crm_counts, **dmp_counts}


def example_segment_seed() -> int:
    """The README's example rule as a dynamic segment, refreshed now; its size."""
    segment, _ = Segment.objects.get_or_create(
        name=EXAMPLE_SEGMENT,
        defaults={
            "kind": Segment.Kind.DYNAMIC,
            "rule": EXAMPLE_RULE,
            "description": "The rule language's example in the README.",
        },
    )
    return segment_refresh(segment=segment).size


# The rule language's example in the README, as a segment of the demo: it matches people there
# (tests.cdphub.test_seed_demo holds the two together).
EXAMPLE_SEGMENT = "Demo: Dutch jacket browsers"
EXAMPLE_RULE = {
    "all": [
        {"trait": "country", "op": "eq", "value": "NL"},
        {"page": "/jackets", "within_days": 90},
        {"not": {"event": "Order Completed", "within_days": 7}},
        {"consent": "email_marketing"},
        {
            "any": [
                {"computed": "lifetime_value", "op": "gt", "value": 100},
                {
                    "event": "Product Viewed",
                    "where": [{"property": "category", "op": "eq", "value": "Jackets"}],
                    "count": {"op": "gte", "value": 2},
                },
            ]
        },
    ]
}

DEMO_SEGMENTS = (
    ("Demo: repeat buyers", "Two or more orders.", lambda p: p.orders >= 2),
    (
        "Demo: outdoor shoppers",
        "Customers who mostly shop outdoor gear; the seed of the demo lookalike.",
        lambda p: p.orders >= 1 and p.persona == "outdoor",
    ),
)


def segments_seed(people: list[Person], now: datetime) -> tuple[dict[str, Segment], int]:
    """Static demo segments with their members (segments are otherwise rule-evaluated)."""
    segments, written = {}, 0
    for name, description, is_member in DEMO_SEGMENTS:
        segment, _ = Segment.objects.get_or_create(
            name=name, defaults={"kind": Segment.Kind.STATIC, "description": description}
        )
        count = rows_copy(
            SegmentMembership,
            ["segment_id", "profile_id", "entered_at"],
            ((segment.pk, p.id, now) for p in people if is_member(p)),
        )
        Segment.objects.filter(pk=segment.pk).update(size=count, refreshed_at=now)
        segments[name] = segment
        written += count
    return segments, written
