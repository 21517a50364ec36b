"""Demo people: profiles with traits, identities consistent with them, and 90 days of events."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import phonenumbers

from cdphub.demo import vocab
from cdphub.demo.bulk import ids_reserve, rows_copy
from profiles.ingest.observed import observed_fields_write, observed_in_events
from profiles.models import Event, Identity, Profile

HISTORY_DAYS = 90
DEMO_SITE = "https://outdoor.example"
PERSONAS = ("outdoor", "traveller", "fashion", "tech")
PERSONA_PRODUCTS = {
    "outdoor": ("Jackets", "Camping", "Shoes", "Accessories"),
    "traveller": ("Bags", "Jackets", "Accessories"),
    "fashion": ("Shirts", "Shoes", "Bags"),
    "tech": ("Accessories", "Bags", "Shoes"),
}


@dataclass(slots=True)
class Person:
    id: int
    index: int
    persona: str
    country: str
    city: str
    locale: str
    plan: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    user_id: str = ""
    anonymous_id: str = ""
    device_id: str = ""
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    orders: int = 0
    revenue: Decimal = Decimal("0")
    product_categories: set[str] = field(default_factory=set)

    @property
    def is_known(self) -> bool:
        return bool(self.email)

    def traits(self) -> dict:
        if not self.is_known:
            return {}
        traits = {
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "country": self.country,
            "city": self.city,
            "plan": self.plan,
        }
        if self.phone:
            traits["phone"] = self.phone
        return traits


class PeopleGenerator:
    def __init__(self, rng: random.Random, now: datetime, sources: dict[str, int]):
        self.rng = rng
        self.now = now
        self.sources = sources
        self.countries = list(vocab.COUNTRIES)
        self.country_weights = [vocab.COUNTRIES[c][0] for c in self.countries]
        self.phones_used: set[str] = set()

    def people_make(self, count: int) -> list[Person]:
        ids = ids_reserve(Profile, count)
        return [self.person_make(profile_id, index) for index, profile_id in enumerate(ids)]

    def person_make(self, profile_id: int, index: int) -> Person:
        rng = self.rng
        country = rng.choices(self.countries, self.country_weights)[0]
        _, cities, _, _, locale = vocab.COUNTRIES[country]
        plans, plan_weights = zip(*vocab.PLANS, strict=True)
        person = Person(
            id=profile_id,
            index=index,
            persona=rng.choice(PERSONAS),
            country=country,
            city=rng.choice(cities),
            locale=locale,
            plan=rng.choices(plans, plan_weights)[0],
            anonymous_id=f"anon-{rng.getrandbits(64):016x}",
        )
        # About one in six people browse without ever identifying: anonymous-only profiles.
        if rng.random() < 0.84:
            person.first_name = rng.choice(vocab.FIRST_NAMES)
            person.last_name = rng.choice(vocab.LAST_NAMES)
            local = ascii_fold(f"{person.first_name}.{person.last_name}".lower().replace(" ", ""))
            person.email = f"{local}{index}@{rng.choice(vocab.EMAIL_DOMAINS)}"
            if rng.random() < 0.6:
                person.phone = self.phone_make(country)
            if rng.random() < 0.7:
                person.user_id = f"u{100000 + index}"
        if rng.random() < 0.3:
            person.device_id = f"dev-{rng.getrandbits(64):016x}"
        return person

    def phone_make(self, country: str) -> str:
        _, _, prefix, digits, _ = vocab.COUNTRIES[country]
        while True:
            candidate = prefix + "".join(str(self.rng.randrange(10)) for _ in range(digits))
            # Phones are unique identities: a number already given out is drawn again.
            if candidate not in self.phones_used and phonenumbers.is_valid_number(
                phonenumbers.parse(candidate)
            ):
                self.phones_used.add(candidate)
                return candidate

    # --- events ------------------------------------------------------------------------------

    def events_write(self, people: list[Person]) -> int:
        fields = [
            "profile_id",
            "source_id",
            "type",
            "name",
            "properties",
            "context",
            "message_id",
            "timestamp",
            "received_at",
        ]
        rows = (row for p in people for row in self.person_events(p))
        seen: list[tuple[str, str, dict]] = []
        written = rows_copy(Event, fields, noting(rows, seen))
        # What processing would have recorded for the rule builder (profiles.ingest.observed).
        observed_fields_write(observed_in_events(seen))
        return written

    def person_events(self, person: Person):
        """A person's sessions over the last 90 days; repeat visits follow a long tail."""
        rng = self.rng
        sessions = min(int(rng.paretovariate(1.6)), 25)
        start = self.now - timedelta(seconds=rng.uniform(0, HISTORY_DAYS * 86400))
        times = sorted(
            [start] + [start + (self.now - start) * rng.random() for _ in range(sessions - 1)]
        )
        person.first_seen, person.last_seen = times[0], times[0]
        sequence = 0
        for number, session_start in enumerate(times):
            on_app = bool(person.device_id) and rng.random() < 0.5
            for kind, name, properties, source, at in self.session_events(
                person, session_start, on_app, identify=number == 0 and person.is_known
            ):
                sequence += 1
                person.last_seen = max(person.last_seen, at)
                context = self.context(person, on_app)
                if kind == "page":
                    context["page"] = {"path": properties["path"]}
                yield (
                    person.id,
                    self.sources[source],
                    kind,
                    name,
                    properties,
                    context,
                    f"demo-{person.id}-{sequence}",
                    at,
                    at + timedelta(milliseconds=rng.randrange(50, 3000)),
                )

    def session_events(self, person: Person, at: datetime, on_app: bool, identify: bool):
        rng = self.rng
        web = "app" if on_app else "website"
        page_type = "screen" if on_app else "page"
        step = timedelta(seconds=rng.randrange(10, 120))
        if identify:
            yield "identify", "", person.traits(), web, at
        for _ in range(rng.randint(1, 4)):
            at += step
            name, path = rng.choice(vocab.PAGES)
            page = {"path": path, "url": f"{DEMO_SITE}{path}", "title": f"{name} | Demo Outdoor"}
            yield page_type, name, page, web, at
        wanted = PERSONA_PRODUCTS[person.persona]
        viewed = []
        for _ in range(rng.choices((0, 1, 2, 3), (35, 35, 20, 10))[0]):
            at += step
            product = self.product_pick(wanted)
            viewed.append(product)
            person.product_categories.add(product[2])
            yield "track", "Product Viewed", product_properties(product), web, at
        if not viewed or rng.random() > 0.3:
            return
        product = rng.choice(viewed)
        at += step
        yield "track", "Added to Cart", {**product_properties(product), "quantity": 1}, web, at
        if rng.random() > 0.45:
            return
        at += step * 3
        in_store = rng.random() < 0.12
        yield (
            "track",
            "Order Completed",
            self.order(person, [product]),
            "pos" if in_store else ("app" if on_app else "shop"),
            at,
        )

    def product_pick(self, wanted: tuple[str, ...]):
        if self.rng.random() < 0.75:
            choices = [p for p in vocab.PRODUCTS if p[2] in wanted]
            return self.rng.choice(choices)
        return self.rng.choice(vocab.PRODUCTS)

    def order(self, person: Person, products: list) -> dict:
        extra = self.rng.random() < 0.3
        if extra:
            products = [*products, self.rng.choice(vocab.PRODUCTS)]
        revenue = sum(Decimal(str(p[3])) for p in products)
        person.orders += 1
        person.revenue += revenue
        return {
            "order_id": f"DEMO-{person.id}-{person.orders}",
            "revenue": float(revenue),
            "currency": "EUR",
            "products": [product_properties(p) for p in products],
        }

    def context(self, person: Person, on_app: bool) -> dict:
        context = {
            "ip": f"203.0.113.{person.index % 250 + 1}",
            "locale": person.locale,
            "userAgent": vocab.USER_AGENTS[person.index % len(vocab.USER_AGENTS)],
        }
        if on_app:
            context["device"] = {
                "id": person.device_id,
                "type": "ios" if person.index % 2 else "android",
            }
        campaign = self.rng.choice(vocab.CAMPAIGNS)
        if campaign:
            context["campaign"] = {
                "name": campaign,
                "source": "newsletter" if "news" in campaign else "google",
            }
        return context

    # --- profiles and identities -------------------------------------------------------------

    def profiles_write(self, people: list[Person]) -> int:
        fields = [
            "id",
            "traits",
            "computed_traits",
            "first_seen_at",
            "last_seen_at",
            "created_at",
            "updated_at",
        ]
        return rows_copy(
            Profile,
            fields,
            (
                (
                    p.id,
                    p.traits(),
                    {
                        "order_count": p.orders,
                        "lifetime_value": float(p.revenue),
                        "product_categories": sorted(p.product_categories),
                    },
                    p.first_seen,
                    p.last_seen,
                    p.first_seen,
                    p.last_seen,
                )
                for p in people
            ),
        )

    def identities_write(self, people: list[Person]) -> int:
        fields = [
            "profile_id",
            "kind",
            "value",
            "source_id",
            "first_seen_at",
            "last_seen_at",
            "created_at",
        ]

        def rows():
            for p in people:
                for kind, value, source in (
                    (Identity.Kind.ANONYMOUS_ID, p.anonymous_id, "website"),
                    (Identity.Kind.EMAIL, p.email, "website"),
                    (Identity.Kind.PHONE, p.phone, "shop"),
                    (Identity.Kind.USER_ID, p.user_id, "website"),
                    (Identity.Kind.DEVICE_ID, p.device_id, "app"),
                ):
                    if value:
                        yield (
                            p.id,
                            kind,
                            value,
                            self.sources[source],
                            p.first_seen,
                            p.last_seen,
                            p.first_seen,
                        )

        return rows_copy(Identity, fields, rows())


def noting(rows, seen: list):
    """The event rows, each noted in ``seen`` as (type, name, properties) on its way."""
    for row in rows:
        seen.append((row[2], row[3], row[4]))
        yield row


def product_properties(product) -> dict:
    sku, name, category, price = product
    return {"sku": sku, "name": name, "category": category, "price": price}


def ascii_fold(text: str) -> str:
    """``müller`` -> ``muller``: e-mail local parts in the demo stay plain ASCII."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
