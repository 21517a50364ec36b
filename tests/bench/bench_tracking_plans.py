"""Tracking plans: processing events/s of a source without a plan vs one with a plan.

Runs against a dedicated database (``<your database>_plans_bench``, dropped and re-created) with
one source sending ten track events of eight properties each (strings, numbers, an enum, an
e-mail, a date-time, a list), identify calls and pages. It follows a plan of those ten events
(each with a JSON Schema of its eight properties, two required, no others allowed) and the
identify traits, violations allowed and flagged; about one message in fifty breaks it. After a
history of the same traffic (processed first, not timed), rounds of BENCH_PLANS_EVENTS /
BENCH_PLANS_ROUNDS messages are staged and processed in one process, the plan active for half
of them and a draft (applying to nothing) for the other half, alternately; the sums give
events/s without and with the plan, and the ratio (the budget: a plan costs processing at most
a tenth). It also times the plan check alone on the same messages. Tune with BENCH_PLANS_EVENTS
(default 20,000 per source), BENCH_PLANS_ROUNDS (default 4), BENCH_PLANS_HISTORY (default as
many as BENCH_PLANS_EVENTS)."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

from tests.bench.bench_ingest import env_int, use_database

BATCH = 100
CURRENCIES = ["EUR", "USD", "GBP"]
CATEGORIES = ["jackets", "shoes", "bags", "sale", "kids"]
EVENTS = [
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
    "Payment Info Entered",
    "Order Completed",
    "Coupon Applied",
    "Product List Filtered",
    "Searched",
]
PROPERTY_SCHEMAS = {
    "sku": {"type": "string", "pattern": "^SKU-[0-9]+$"},
    "price": {"type": "number", "minimum": 0},
    "quantity": {"type": "integer", "minimum": 1},
    "currency": {"type": "string", "enum": CURRENCIES},
    "category": {"type": "string"},
    "contact": {"type": "string", "format": "email"},
    "at": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}},
}


def plan_events() -> list[dict]:
    schema = {
        "type": "object",
        "properties": PROPERTY_SCHEMAS,
        "required": ["sku", "price"],
        "additionalProperties": False,
    }
    traits = {
        "type": "object",
        "properties": {"email": {"type": "string", "format": "email"}, "plan": {"type": "string"}},
    }
    return [
        *({"type": "track", "name": name, "schema": schema} for name in EVENTS),
        {"type": "identify", "name": "", "schema": traits},
    ]


def properties(rng: random.Random, sent_at: str) -> dict:
    sent = {
        "sku": f"SKU-{rng.randint(1, 500)}",
        "price": round(rng.uniform(5, 300), 2),
        "quantity": rng.randint(1, 4),
        "currency": rng.choice(CURRENCIES),
        "category": rng.choice(CATEGORIES),
        "contact": f"shop{rng.randint(1, 20)}@example.com",
        "at": sent_at,
        "tags": rng.sample(CATEGORIES, 2),
    }
    if rng.random() < 0.02:  # a sender's bug: a price as text, or a property nobody planned
        if rng.random() < 0.5:
            sent["price"] = str(sent["price"])
        else:
            sent["debug"] = True
    return sent


def messages(rng: random.Random, prefix: str, people: int, count: int, when: str) -> list[dict]:
    """``count`` messages of a population (``prefix``): half known, identifies, tracks, pages."""
    made = []
    for _ in range(count):
        person = rng.randrange(people)
        message = {
            "anonymousId": f"{prefix}-anon-{person}",
            "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": when,
            "context": {"ip": "10.0.0.1", "library": {"name": "analytics.js", "version": "5"}},
        }
        if person % 2 == 0:
            message["userId"] = f"{prefix}-user-{person}"
        roll = rng.random()
        if roll < 0.1:
            message.update(
                type="identify",
                traits={"email": f"{prefix}{person}@example.com", "plan": rng.choice(["a", "b"])},
            )
        elif roll < 0.85:
            message.update(type="track", event=rng.choice(EVENTS), properties=properties(rng, when))
        else:
            message.update(type="page", name="Shop", properties={"path": "/"})
        made.append(message)
    return made


def stage(source_id: int, batch: list[dict]) -> None:
    from profiles.ingest.collect import messages_collect

    for start in range(0, len(batch), BATCH):
        messages_collect(source_id=source_id, messages=batch[start : start + BATCH])


def process_timed() -> tuple[int, float]:
    from profiles.ingest.processing import pending_process

    started = time.perf_counter()
    done = pending_process()
    return done, time.perf_counter() - started


def check_alone(source_id: int, batch: list[dict]) -> float:
    """Microseconds per message of the plan check alone (no database but the plan lookup)."""
    from profiles.ingest import plans
    from profiles.resolution.batch import Staged

    now = datetime.now(UTC)
    rows = [
        Staged(i, source_id, m["messageId"], m["type"], m, now, now)
        for i, m in enumerate(batch, start=1)
    ]
    plans.staged_check(rows[:BATCH])  # compiles the plan once, as the first batch does
    timings = []
    for _ in range(3):
        copies = [
            Staged(r.id, r.source_id, r.message_id, r.type, dict(r.payload), now, now) for r in rows
        ]
        started = time.perf_counter()
        for start in range(0, len(copies), 2000):
            plans.staged_check(copies[start : start + 2000])
        timings.append((time.perf_counter() - started) / len(copies) * 1e6)
    return statistics.median(timings)


def bench_database() -> str:
    from tests.server import current_database_url

    name = f"{connection.settings_dict['NAME']}_plans_bench"
    with psycopg.connect(current_database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def run() -> None:
    total = env_int("BENCH_PLANS_EVENTS", 20_000)
    rounds = env_int("BENCH_PLANS_ROUNDS", 4)
    history = env_int("BENCH_PLANS_HISTORY", total)
    per_round = max(total // rounds // BATCH, 1) * BATCH
    people = max(total // 10, 100)
    name = bench_database()
    original = connection.settings_dict["NAME"]
    processing = settings.CDPHUB_INGEST_PROCESSING
    try:
        use_database(name)
        call_command("migrate", verbosity=0)
        settings.CDPHUB_INGEST_PROCESSING = "off"
        from profiles.ingest import plans
        from profiles.models import TrackingPlanViolation
        from profiles.services import source_create

        source, _ = source_create(name="Shop website")
        plan = plans.tracking_plan_create(
            name="Shop",
            status="draft",
            events=plan_events(),
            sources=[{"source": source, "violation_action": "allow"}],
        )
        yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        stage(source.pk, messages(random.Random(7), "p", people, history, yesterday))
        process_timed()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")

        # One source and one population; the plan is switched on for half of the rounds (a
        # draft applies to nothing), alternating which goes first, each round new traffic of
        # the same kind: the difference is the plan's alone.
        seconds = {False: 0.0, True: 0.0}
        counts = {False: 0, True: 0}
        now = datetime.now(UTC).isoformat()
        for round_number in range(rounds):
            order = [False, True] if round_number % 2 == 0 else [True, False]
            for planned in order:
                plans.tracking_plan_update(plan=plan, status="active" if planned else "draft")
                rng = random.Random(1000 + 2 * round_number + planned)
                stage(source.pk, messages(rng, "p", people, per_round, now))
                done, elapsed = process_timed()
                seconds[planned] += elapsed
                counts[planned] += done
        without = counts[False] / seconds[False]
        with_plan = counts[True] / seconds[True]
        flagged = sum(TrackingPlanViolation.objects.values_list("count", flat=True))
        plans.tracking_plan_update(plan=plan, status="active")
        sample = messages(random.Random(99), "p", people, min(per_round, 10_000), now)
        alone = check_alone(source.pk, sample)
        print(
            f"  {rounds} rounds of {per_round} messages with the plan and {per_round} without, "
            f"after {history} of history; "
            f"plan: {len(EVENTS)} events x {len(PROPERTY_SCHEMAS)} properties + identify traits"
        )
        print(f"  without a plan: {without:10,.0f} events/s  ({counts[False]} events)")
        print(
            f"  with a plan:    {with_plan:10,.0f} events/s  ({counts[True]} events, "
            f"{flagged} violations counted)"
        )
        print(
            f"  ratio: {with_plan / without:.3f} (cost {(1 - with_plan / without) * 100:+.1f}%; "
            f"budget 10%); the plan check alone: {alone:.1f} us per message"
        )
    finally:
        settings.CDPHUB_INGEST_PROCESSING = processing
        use_database(original)
        connections["default"].close()
