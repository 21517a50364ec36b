"""Computed traits that marketers define, against hand-written SQL computing the same values.

On the generated database of ``bench_segments`` (BENCH_PROFILES profiles, BENCH_EVENTS events;
built there if missing), with ten defined traits of every kind, in the same run:

- the incremental refresh of the ten traits for the profiles touched by BENCH_TRAITS_NEW_EVENTS
  new events (default 10,000), next to one hand-written UPDATE computing the same values;
- the full computation of one trait for every profile, next to one hand-written UPDATE: when
  every value is written (a new trait), and again when nothing changed (the nightly case);
- event processing (identity resolution, events, then the refresh of the touched profiles) of
  BENCH_TRAITS_MESSAGES staged messages (default 20,000) with the ten traits defined, next to
  none (run alternately, medians of BENCH_TRAITS_ROUNDS rounds, default 2).

Targets: both ratios <= 1.5x; processing with ten traits no more than 20% slower. The values
of the hand-written SQL are checked against the service's.

    BENCH_PROFILES=100000 BENCH_EVENTS=1000000 python -m tests.bench bench_traits
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from tests.bench.bench_segments import PROFILES, bench_database, execute, scalar

NEW_EVENTS = int(os.environ.get("BENCH_TRAITS_NEW_EVENTS", 10_000))
MESSAGES = int(os.environ.get("BENCH_TRAITS_MESSAGES", 20_000))
ROUNDS = int(os.environ.get("BENCH_TRAITS_ROUNDS", 2))
REPEAT = int(os.environ.get("BENCH_REPEAT", 5))

# (key, kind, event type, event name, property, where, window days)
DEFINITIONS = [
    ("orders", "count", "track", "Order Completed", "", [], None),
    ("orders_30d", "count", "track", "Order Completed", "", [], 30),
    ("spent", "sum", "track", "Order Completed", "revenue", [], None),
    ("basket", "average", "track", "Order Completed", "revenue", [], 90),
    ("smallest_order", "min", "track", "Order Completed", "revenue", [], None),
    ("largest_order", "max", "track", "Order Completed", "revenue", [], None),
    ("first_sku", "first", "track", "Product Viewed", "sku", [], None),
    ("last_sku", "last", "track", "Product Viewed", "sku", [], None),
    ("usual_sku", "most_frequent", "track", "Added to Cart", "sku", [], None),
    (
        "jacket_pages",
        "count",
        "page",
        "Page Viewed",
        "",
        [{"property": "url", "op": "contains", "value": "/jackets"}],
        7,
    ),
]
NUMBER = "cdphub_jsonb_numeric(e.properties -> '{prop}')"
VALUE = "e.properties -> '{prop}'"
PRESENT = "jsonb_typeof(e.properties -> '{prop}') <> 'null'"
HAND_COLUMNS = {
    "count": "count(*) FILTER (WHERE {cond})",
    "sum": f"sum({NUMBER}) FILTER (WHERE {{cond}})",
    "average": f"round(avg({NUMBER}) FILTER (WHERE {{cond}}), 2)",
    "min": f"min({NUMBER}) FILTER (WHERE {{cond}})",
    "max": f"max({NUMBER}) FILTER (WHERE {{cond}})",
    "first": f"(array_agg({VALUE} ORDER BY e.timestamp, e.id)"
    f" FILTER (WHERE {{cond}} AND {PRESENT}))[1]",
    "last": f"(array_agg({VALUE} ORDER BY e.timestamp DESC, e.id DESC)"
    f" FILTER (WHERE {{cond}} AND {PRESENT}))[1]",
    "most_frequent": f"mode() WITHIN GROUP (ORDER BY {VALUE})"
    f" FILTER (WHERE {{cond}} AND {PRESENT})",
}


def hand_condition(kind_type, name, where, window) -> str:
    condition = f"e.type = '{kind_type}' AND e.name = '{name}'"
    for item in where:
        condition += f" AND e.properties ->> '{item['property']}' ILIKE '%%{item['value']}%%'"
    if window:
        condition += f" AND e.timestamp >= now() - interval '{window} days'"
    return condition


def hand_sql(definitions, scope: str) -> str:
    """One UPDATE computing ``definitions`` for the profiles of ``scope`` as one would write it
    by hand for these fixed definitions."""
    columns, pairs = [], []
    for index, (key, kind, event_type, name, prop, where, window) in enumerate(definitions):
        cond = hand_condition(event_type, name, where, window)
        columns.append(HAND_COLUMNS[kind].format(cond=cond, prop=prop) + f" AS v{index}")
        value = f"COALESCE(a.v{index}, 0)" if kind in ("count", "sum") else f"a.v{index}"
        pairs.append(f"'{key}', {value}")
    names = ", ".join(sorted({f"'{d[3]}'" for d in definitions}))
    keys = ", ".join(f"'{d[0]}'" for d in definitions)
    return f"""
        WITH scope AS MATERIALIZED (
            SELECT p.id FROM profiles_profile p WHERE p.merged_into_id IS NULL AND {scope}
            ORDER BY p.id FOR NO KEY UPDATE),
        a AS (SELECT e.profile_id, {", ".join(columns)}
              FROM profiles_event e JOIN scope s ON s.id = e.profile_id
              WHERE e.name IN ({names}) GROUP BY e.profile_id),
        docs AS (SELECT s.id, jsonb_strip_nulls(jsonb_build_object({", ".join(pairs)})) AS doc
                 FROM scope s LEFT JOIN a ON a.profile_id = s.id)
        UPDATE profiles_profile p SET computed_traits = (p.computed_traits - ARRAY[{keys}]) || d.doc
        FROM docs d WHERE p.id = d.id
          AND p.computed_traits IS DISTINCT FROM (p.computed_traits - ARRAY[{keys}]) || d.doc
    """


def define_all():
    from profiles.models import ComputedTrait

    ComputedTrait.objects.all().delete()
    return [
        ComputedTrait.objects.create(
            key=key,
            name=key,
            kind=kind,
            event_type=event_type,
            event_name=name,
            property=prop,
            where=where,
            window_days=window,
        )
        for key, kind, event_type, name, prop, where, window in DEFINITIONS
    ]


def alternate(label: str, service, hand, target: float = 1.5, timed_inside: bool = False) -> None:
    """Medians of REPEAT runs of each, alternating, after a warm-up of each. With
    ``timed_inside`` the runs return their own time (what they prepare is not counted)."""

    def timed(run) -> float:
        if timed_inside:
            return run()
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    service(), hand()  # warm-up (and the first writes)
    service_times, hand_times = [], []
    for _ in range(REPEAT):
        service_times.append(timed(service))
        hand_times.append(timed(hand))
    ours, theirs = statistics.median(service_times), statistics.median(hand_times)
    ratio = ours / theirs
    verdict = "ok" if ratio <= target else "SLOWER than target"
    print(
        f"   {label:<48} service {ours * 1000:9.1f} ms  hand SQL {theirs * 1000:9.1f} ms  "
        f"ratio {ratio:4.2f}x {verdict}"
    )


def values_of(ids, keys) -> dict:
    from profiles.models import Profile

    rows = Profile.objects.filter(pk__in=ids).values_list("pk", "computed_traits")
    return {pk: {k: doc.get(k) for k in keys} for pk, doc in rows}


def incremental(traits) -> None:
    from cdphub.sql import execute as sql_execute
    from profiles.segments.defined_traits import defined_traits_update

    rng = random.Random(5)
    touched = sorted({rng.randint(1, PROFILES) for _ in range(NEW_EVENTS)})
    execute(
        """
        INSERT INTO profiles_event (profile_id, source_id, type, name, properties, context,
                                    message_id, timestamp, received_at)
        SELECT pid, 1, 'track', 'Order Completed', jsonb_build_object('revenue', 10 + pid %% 90),
               '{}', 'bt-' || pid || '-' || n, now(), now()
        FROM unnest(%s::bigint[]) pid CROSS JOIN generate_series(1, 1) n
        """,
        [touched],
    )
    sql = hand_sql(DEFINITIONS, "p.id = ANY(%b::bigint[])")
    keys = [d[0] for d in DEFINITIONS]
    try:
        defined_traits_update(profile_ids=touched, traits=traits)
        ours = values_of(touched[:500], keys)
        sql_execute(sql, [touched])
        if values_of(touched[:500], keys) != ours:
            print("   !! incremental: the service and the hand-written SQL disagree")
        alternate(
            f"10 traits, {len(touched):,} profiles touched by {NEW_EVENTS:,} events",
            lambda: defined_traits_update(profile_ids=touched, traits=traits),
            lambda: sql_execute(sql, [touched]),
        )
    finally:
        execute("DELETE FROM profiles_event WHERE message_id LIKE 'bt-%%'")


def full(traits) -> None:
    """Twice: every value written (the trait is new: its key removed first, not timed), and
    computed again with nothing changed (the nightly case)."""
    from cdphub.sql import execute as sql_execute
    from profiles.segments.defined_traits import defined_traits_recompute

    trait = next(t for t in traits if t.key == "spent")
    definition = [d for d in DEFINITIONS if d[0] == "spent"]
    sql = hand_sql(definition, "true")

    def without_values(run):
        def timed_run():
            execute(
                "UPDATE profiles_profile SET computed_traits = computed_traits - 'spent' "
                "WHERE computed_traits ? 'spent'"
            )
            started = time.perf_counter()
            run()
            return time.perf_counter() - started

        return timed_run

    global REPEAT
    repeat, REPEAT = REPEAT, 2
    try:
        alternate(
            f"one trait for {PROFILES:,} profiles, all written",
            without_values(lambda: defined_traits_recompute([trait])),
            without_values(lambda: sql_execute(sql)),
            timed_inside=True,
        )
        alternate(
            f"one trait for {PROFILES:,} profiles, again",
            lambda: defined_traits_recompute([trait]),
            lambda: sql_execute(sql),
        )
    finally:
        REPEAT = repeat


def processing(traits_wanted: bool, source_id: int, round_: int) -> float:
    from profiles.ingest.collect import messages_collect
    from profiles.ingest.processing import pending_process
    from profiles.models import ComputedTrait

    if traits_wanted:
        define_all()
    else:
        ComputedTrait.objects.all().delete()
    rng = random.Random(round_)
    now = datetime.now(UTC)
    people = max(MESSAGES // 10, 10)
    names = ["Order Completed", "Product Viewed", "Added to Cart"]
    messages = [
        {
            "type": "track",
            "userId": f"bench-{round_}-{rng.randrange(people)}",
            "event": rng.choice(names),
            "properties": {"revenue": rng.randint(5, 300), "sku": f"SKU-{rng.randrange(500)}"},
            "messageId": str(uuid.uuid4()),
            "timestamp": (now - timedelta(minutes=rng.randrange(600))).isoformat(),
        }
        for _ in range(MESSAGES)
    ]
    for start in range(0, len(messages), 500):
        messages_collect(source_id=source_id, messages=messages[start : start + 500])
    started = time.perf_counter()
    pending_process()
    return MESSAGES / (time.perf_counter() - started)


def processing_with_and_without(profiles_before: int) -> None:
    from django.conf import settings

    from profiles.services import source_create

    settings.CDPHUB_INGEST_PROCESSING = "off"
    source, _ = source_create(name=f"bench traits {uuid.uuid4().hex[:6]}")
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        processing(False, source.pk, 1000)  # warm-up: caches, plans, the new source's rows
        for round_ in range(ROUNDS):
            for wanted in (False, True):
                rates[wanted].append(processing(wanted, source.pk, round_ * 2 + wanted))
    finally:
        execute("DELETE FROM profiles_event WHERE source_id = %s", [source.pk])
        for table in ("profiles_identity", "profiles_profilerefresh"):
            execute(f"DELETE FROM {table} WHERE profile_id > %s", [profiles_before])
        execute("DELETE FROM profiles_profile WHERE id > %s", [profiles_before])
    without, with_traits = statistics.median(rates[False]), statistics.median(rates[True])
    slower = 1 - with_traits / without
    verdict = "ok" if slower <= 0.20 else "SLOWER than target"
    print(
        f"   processing {MESSAGES:,} messages: none {without:8,.0f} msg/s, ten traits "
        f"{with_traits:8,.0f} msg/s ({slower * 100:.0f}% slower) {verdict}"
    )


def run() -> None:
    with bench_database() as name:
        print(f"   database {name}: {PROFILES:,} profiles")
        profiles_before = scalar("SELECT max(id) FROM profiles_profile")
        traits = define_all()
        incremental(traits)
        full(traits)
        processing_with_and_without(profiles_before)
        from profiles.models import ComputedTrait

        ComputedTrait.objects.all().delete()
        execute(
            "UPDATE profiles_profile SET computed_traits = computed_traits - %s::text[] "
            "WHERE computed_traits ?| %s::text[]",
            [[d[0] for d in DEFINITIONS]] * 2,
        )
