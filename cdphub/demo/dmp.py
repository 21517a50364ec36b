"""Demo DMP: data providers, an IAB-like taxonomy, visitors (linked to profiles only with consent)
and third-party category hits with their expiry."""

from __future__ import annotations

import contextlib
import random
from datetime import datetime, timedelta

from audiences.lookalike import LookalikeError, lookalike_build
from audiences.models import Audience, Category, DataProvider, Visitor, VisitorTraitHit
from audiences.services import audience_members_set
from cdphub.demo import vocab
from cdphub.demo.bulk import ids_reserve, rows_copy
from cdphub.demo.people import PERSONAS, Person
from profiles.models import Segment

VISITOR_RETENTION = timedelta(days=90)
PERSONA_CATEGORIES = {
    "outdoor": ("INT-OUT-HIKE", "INT-OUT-CAMP", "INT-OUT-RUN", "PI-OUT-TENT", "PI-APP-OUTER"),
    "traveller": ("INT-TRV-CITY", "INT-TRV-ADV", "PI-TRV-FLT", "PI-TRV-HTL", "PI-OUT-BAG"),
    "fashion": ("INT-FSH", "INT-FSH-SUST", "PI-APP-SHOE", "PI-APP-OUTER", "DEM-HHI-HIGH"),
    "tech": ("INT-TEC", "INT-TEC-GAD", "PI-ELEC-PHONE", "INT-OUT-CYC", "DEM-AGE-25-34"),
}
DEMO_AUDIENCES = (
    ("Demo: hikers seen this month", {"category": "INT-OUT-HIKE", "within_days": 30}),
    (
        "Demo: travel intenders in NL",
        {"all": [{"category": "PI-TRV-FLT"}, {"visitor": "country", "op": "eq", "value": "NL"}]},
    ),
)
# Purposes under which a visitor may be linked to a known person's profile.
LINKING_PURPOSES = frozenset({"advertising", "personalisation"})


def taxonomy_ensure() -> dict[str, int]:
    existing = dict(Category.objects.values_list("code", "pk"))
    for code, name, kind, parent in vocab.TAXONOMY:
        if code not in existing:
            tier = 1 if parent is None else Category.objects.get(pk=existing[parent]).tier + 1
            existing[code] = Category.objects.create(
                code=code, name=name, kind=kind, parent_id=existing.get(parent), tier=tier
            ).pk
    return existing


def providers_ensure() -> list[DataProvider]:
    return [
        DataProvider.objects.get_or_create(
            name=name, defaults={"party": party, "retention_days": days}
        )[0]
        for name, party, days in vocab.PROVIDERS
    ]


class DmpGenerator:
    def __init__(self, rng: random.Random, now: datetime):
        self.rng = rng
        self.now = now
        self.categories = taxonomy_ensure()
        self.providers = providers_ensure()
        self.leaves = [code for code, *_ in vocab.TAXONOMY if code.count("-") >= 2]

    def write(
        self, people: list[Person], granted: dict[int, set[str]], lookalike_seed: Segment
    ) -> dict[str, int]:
        visitors = self.visitors_plan(people, granted)
        ids = ids_reserve(Visitor, len(visitors))
        rows = [
            (visitor_id, *visitor[:-1]) for visitor_id, visitor in zip(ids, visitors, strict=True)
        ]
        counts = {
            "visitors": rows_copy(
                Visitor,
                [
                    "id",
                    "key_kind",
                    "key",
                    "first_seen_at",
                    "last_seen_at",
                    "country",
                    "device_type",
                    "browser",
                    "profile_id",
                    "expires_at",
                    "created_at",
                ],
                rows,
            )
        }
        personas = [visitor[-1] for visitor in visitors]
        counts["trait_hits"] = rows_copy(
            VisitorTraitHit,
            ["visitor_id", "category_id", "provider_id", "observed_at", "expires_at"],
            self.hits(zip(ids, personas, strict=True)),
        )
        counts["audience_members"] = self.audiences_seed(lookalike_seed)
        return counts

    def audiences_seed(self, lookalike_seed: Segment) -> int:
        """Rule audiences with members (as the rule evaluator would fill them) and a lookalike
        of the outdoor shoppers built by the real scoring."""
        members = 0
        live = VisitorTraitHit.objects.filter(expires_at__gt=self.now)
        matching = {
            "Demo: hikers seen this month": live.filter(
                category__code="INT-OUT-HIKE", observed_at__gte=self.now - timedelta(days=30)
            ),
            "Demo: travel intenders in NL": live.filter(
                category__code="PI-TRV-FLT", visitor__country="NL"
            ),
        }
        for name, rule in DEMO_AUDIENCES:
            audience, _ = Audience.objects.get_or_create(name=name, defaults={"rule": rule})
            visitors = matching[name].values_list("visitor_id", flat=True)
            members += audience_members_set(audience=audience, visitor_ids=visitors)
        lookalike, _ = Audience.objects.get_or_create(
            name="Demo: lookalike of outdoor shoppers",
            defaults={
                "kind": Audience.Kind.LOOKALIKE,
                "seed_segment": lookalike_seed,
                "reach_percent": 10,
                "description": "Unlinked visitors most similar to the outdoor shoppers.",
            },
        )
        # Tiny demo sets can have no linked seed visitor: the audience then stays empty.
        with contextlib.suppress(LookalikeError):
            members += lookalike_build(audience=lookalike, now=self.now).size
        return members

    def visitors_plan(self, people: list[Person], granted: dict[int, set[str]]) -> list[tuple]:
        """Every person's browser cookie and app device, plus as many never-identified visitors."""
        rng = self.rng
        devices, weights = zip(*vocab.DEVICE_TYPES, strict=True)
        planned = []
        for person in people:
            linked = person.id if granted.get(person.id, set()) & LINKING_PURPOSES else None
            for kind, key in (("cookie", person.anonymous_id), ("device", person.device_id)):
                if key:
                    device = "mobile" if kind == "device" else rng.choices(devices, weights)[0]
                    planned.append(
                        self.visitor(
                            kind,
                            key,
                            person.first_seen,
                            person.last_seen,
                            person.country,
                            device,
                            linked,
                            person.persona,
                        )
                    )
        countries = list(vocab.COUNTRIES)
        for _ in range(len(people)):
            first = self.now - timedelta(seconds=rng.uniform(0, 80 * 86400))
            last = first + (self.now - first) * rng.random()
            planned.append(
                self.visitor(
                    "cookie",
                    f"ck-{rng.getrandbits(64):016x}",
                    first,
                    last,
                    rng.choice(countries),
                    rng.choices(devices, weights)[0],
                    None,
                    rng.choice(PERSONAS),
                )
            )
        return planned

    def visitor(self, kind, key, first, last, country, device, profile_id, persona) -> tuple:
        browser = self.rng.choice(vocab.BROWSERS) if kind == "cookie" else ""
        return (
            kind,
            key,
            first,
            last,
            country,
            device,
            browser,
            profile_id,
            last + VISITOR_RETENTION,
            first,
            persona,
        )

    def hits(self, visitors):
        rng = self.rng
        for visitor_id, persona in visitors:
            picks = set()
            for _ in range(rng.randint(2, 6)):
                pool = PERSONA_CATEGORIES[persona] if rng.random() < 0.8 else self.leaves
                picks.add((rng.choice(pool), rng.choice(self.providers)))
            for code, provider in picks:
                # A few hits are already past their provider's window: the purge has work to do.
                window = provider.retention_days * (1.2 if rng.random() < 0.05 else 0.95)
                observed = self.now - timedelta(seconds=rng.uniform(0, window * 86400))
                expires = observed + timedelta(days=provider.retention_days)
                yield visitor_id, self.categories[code], provider.pk, observed, expires
