"""Segments: compiled rules against hand-written SQL on generated profiles and events.

Builds (once, then reuses) a dedicated database ``<database>_bench`` with ``BENCH_PROFILES``
profiles (default 1,000,000) and ``BENCH_EVENTS`` events (default 10,000,000), generated in SQL
with ``generate_series`` (indexes dropped during the load and rebuilt after). Then, in the same
run, it times three segments (trait + event count in a window + consent; a negation; a nested
segment) as compiled by the rule language and as hand-written SQL, prints the ratio (target
<= 1.5x), and times refreshing one segment after 1,000 new events (on-event refresh of the touched
profiles, and a full refresh).

    BENCH_PROFILES=100000 BENCH_EVENTS=1000000 python -m tests.bench bench_segments

``BENCH_REBUILD=1`` regenerates the data; ``BENCH_REPEAT`` (default 5) is the number of timed
runs per query (alternating compiled and hand-written, medians reported, after a warm-up);
``BENCH_COMPUTED=1`` also times the computed traits (full recompute and an incremental update;
it rewrites the generated ones).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

PROFILES = int(os.environ.get("BENCH_PROFILES", 1_000_000))
EVENTS = int(os.environ.get("BENCH_EVENTS", 10_000_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 5))
REBUILD = os.environ.get("BENCH_REBUILD") == "1"
NEW_EVENTS = 1_000

JACKETS = {
    "all": [
        {"trait": "country", "op": "eq", "value": "NL"},
        {
            "event": "Page Viewed",
            "where": [{"property": "url", "op": "contains", "value": "/jackets"}],
            "count": {"op": "gte", "value": 2},
            "within_days": 30,
        },
        {"consent": "email_marketing"},
    ]
}
JACKETS_SQL = """
    SELECT count(*) FROM profiles_profile p
    WHERE p.merged_into_id IS NULL
      AND p.traits @> '{"country": "NL"}'
      AND p.id IN (
          SELECT e.profile_id FROM profiles_event e
          WHERE e.name = 'Page Viewed' AND e.timestamp >= now() - interval '30 days'
            AND e.properties ->> 'url' ILIKE '%%/jackets%%'
          GROUP BY e.profile_id HAVING count(*) >= 2)
      AND EXISTS (
          SELECT 1 FROM consent_consentstate c JOIN consent_purpose pu ON pu.id = c.purpose_id
          WHERE c.profile_id = p.id AND pu.code = 'email_marketing' AND c.status = 'granted')
"""

BROWSED_NOT_BOUGHT = {
    "all": [
        {"event": "Product Viewed", "within_days": 7},
        {"not": {"event": "Order Completed", "within_days": 7}},
        {"not": {"trait": "plan", "op": "eq", "value": "enterprise"}},
    ]
}
BROWSED_NOT_BOUGHT_SQL = """
    SELECT count(*) FROM profiles_profile p
    WHERE p.merged_into_id IS NULL
      AND EXISTS (SELECT 1 FROM profiles_event e WHERE e.profile_id = p.id
                  AND e.name = 'Product Viewed' AND e.timestamp >= now() - interval '7 days')
      AND NOT EXISTS (SELECT 1 FROM profiles_event e WHERE e.profile_id = p.id
                  AND e.name = 'Order Completed' AND e.timestamp >= now() - interval '7 days')
      AND NOT p.traits @> '{"plan": "enterprise"}'
"""

VALUABLE = {
    "all": [
        {"trait": "age", "op": "gte", "value": 30},
        {"computed": "lifetime_value", "op": "gt", "value": 500},
    ]
}
NESTED_SQL = """
    SELECT count(*) FROM profiles_profile p
    WHERE p.merged_into_id IS NULL
      AND (p.traits ->> 'age')::numeric >= 30
      AND (p.computed_traits ->> 'lifetime_value')::numeric > 500
      AND p.traits ->> 'country' IN ('NL', 'BE')
      AND EXISTS (SELECT 1 FROM profiles_event e WHERE e.profile_id = p.id
                  AND e.name = 'Email Opened' AND e.timestamp >= now() - interval '30 days')
"""


def nested_rule(valuable_id: int) -> dict:
    return {
        "all": [
            {"segment": valuable_id},
            {"event": "Email Opened", "within_days": 30},
            {"trait": "country", "op": "in", "value": ["NL", "BE"]},
        ]
    }


# --- the benchmark database ---------------------------------------------------------------------


@contextmanager
def bench_database():
    """Point the default connection at ``<name>_bench``, created (or recreated when its data
    does not match the requested size) and migrated."""
    settings_dict = connections["default"].settings_dict
    original = settings_dict["NAME"]
    name = os.environ.get("BENCH_DATABASE_NAME", f"{original}_bench")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        exists = cursor.fetchone() is not None
    fresh = not exists
    if exists and (REBUILD or not data_matches_in(name, settings_dict, original)):
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}"')
        fresh = True
    if fresh:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0)
        if fresh:
            generate()
        yield name
    finally:
        connection.close()
        settings_dict["NAME"] = original


def data_matches_in(name: str, settings_dict: dict, original: str) -> bool:
    connection.close()
    settings_dict["NAME"] = name
    try:
        return data_matches()
    except Exception:  # an unmigrated or half-built database: rebuild it
        return False
    finally:
        connection.close()
        settings_dict["NAME"] = original


def execute(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def scalar(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def data_matches() -> bool:
    profiles = scalar("SELECT count(*) FROM profiles_profile")
    events = scalar("SELECT reltuples::bigint FROM pg_class WHERE relname = 'profiles_event'")
    indexes = scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'profiles_event'")
    return profiles == PROFILES and abs(events - EVENTS) <= EVENTS * 0.02 and indexes >= 6


def generate() -> None:
    started = time.perf_counter()
    execute("SET maintenance_work_mem = '1GB'")
    from profiles.eventstore import event_partitions_ensure
    from profiles.models import Source

    # Through the model, so that the fields added to sources later get their defaults.
    Source.objects.create(
        name="bench", kind="website", write_key_hash="bench", write_key_prefix="bench"
    )
    event_partitions_ensure(timezone.now() - timedelta(days=181), timezone.now())
    execute(
        "INSERT INTO consent_purpose (code, name, description, lawful_basis, is_marketing, "
        "requires_express_written, is_active, created_at) VALUES ('email_marketing', "
        "'E-mail marketing', '', 'consent', true, false, true, now()) "
        "ON CONFLICT (code) DO NOTHING"  # the migrations seed the default purposes
    )
    execute(
        """
        INSERT INTO profiles_profile (traits, computed_traits, trait_timestamps, first_seen_at,
                                      last_seen_at, created_at, updated_at)
        SELECT jsonb_build_object(
                   'email', 'user' || g || '@example.com',
                   'country', (ARRAY['NL', 'BE', 'DE', 'FR', 'GB'])[1 + g %% 5],
                   'age', 18 + (g * 7) %% 60,
                   'plan', (ARRAY['free', 'pro', 'enterprise'])[1 + (g * 13) %% 3]),
               jsonb_build_object('lifetime_value', (g * 37) %% 1000, 'order_count', g %% 7),
               '{}', now() - interval '200 days', now(), now(), now()
        FROM generate_series(1, %s::bigint) g
        """,
        [PROFILES],
    )
    # Consent: three in five profiles granted e-mail marketing, the others denied it.
    execute(
        """
        INSERT INTO consent_consentrecord (profile_id, identifier_kind, identifier_value,
            purpose_id, status, occurred_at, recorded_at, source, method, user_agent, form_url,
            tcf_string)
        SELECT g, '', '', (SELECT id FROM consent_purpose WHERE code = 'email_marketing'),
               CASE WHEN g %% 5 < 3 THEN 'granted' ELSE 'denied' END, now(), now(),
               'bench', 'api', '', '', ''
        FROM generate_series(1, %s) g
        """,
        [PROFILES],
    )
    execute(
        "INSERT INTO consent_consentstate (profile_id, purpose_id, status, record_id, updated_at) "
        "SELECT profile_id, purpose_id, status, id, now() FROM consent_consentrecord"
    )
    events_load()
    execute("VACUUM ANALYZE")
    print(
        f"   generated {PROFILES:,} profiles, {EVENTS:,} events in "
        f"{time.perf_counter() - started:.0f} s"
    )


def events_load() -> None:
    """Events without their secondary indexes (rebuilt after: much faster than maintaining
    them row by row). Names: 50% page views (a third on /jackets), 25% product views, 10%
    e-mail opens, 10% carts, 5% orders; over the last 180 days, stored in time order as
    ingestion appends them, each to a pseudo-random profile."""
    from tests.bench.bench_admin import secondary_indexes

    indexes = secondary_indexes("profiles_event")
    with connection.cursor() as cursor:
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    batch = 2_000_000
    execute("SELECT setseed(0.42)")  # the same data set on every rebuild
    for start in range(0, EVENTS, batch):
        execute(
            """
            INSERT INTO profiles_event (profile_id, source_id, type, name, properties, context,
                                        message_id, timestamp, received_at)
            SELECT 1 + floor(random() * %(profiles)s)::bigint, 1,
                   CASE WHEN k < 50 THEN 'page' ELSE 'track' END,
                   CASE WHEN k < 50 THEN 'Page Viewed' WHEN k < 75 THEN 'Product Viewed'
                        WHEN k < 85 THEN 'Email Opened' WHEN k < 95 THEN 'Added to Cart'
                        ELSE 'Order Completed' END,
                   CASE WHEN k < 50 THEN jsonb_build_object('url', 'https://shop.example/'
                            || (ARRAY['jackets', 'shoes', 'bags'])[1 + (g / 7) %% 3] || '/'
                            || g %% 97)
                        WHEN k >= 95 THEN jsonb_build_object('revenue', 10 + g %% 300)
                        ELSE jsonb_build_object('sku', 'SKU-' || g %% 500) END,
                   '{}'::jsonb, 'm' || g,
                   now() - interval '180 days' + g * (interval '180 days' / %(events)s), now()
            FROM (SELECT g, floor(random() * 100) AS k
                  FROM generate_series(%(start)s::bigint, %(end)s::bigint) g) s
            """,
            {
                "profiles": PROFILES,
                "events": EVENTS,
                "start": start + 1,
                "end": min(start + batch, EVENTS),
            },
        )
    execute("SET maintenance_work_mem = '1GB'")
    for _, definition in indexes:
        execute(definition)


# --- timing -------------------------------------------------------------------------------------


def timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def compare(label: str, rule: dict, hand_sql: str) -> None:
    """Compiled and hand-written runs alternate (so load from elsewhere on the machine hits
    both alike), after one warm-up each; the medians are compared. The compiled time includes
    validating and compiling the rule."""
    from profiles.segments.rules import rule_queryset

    def compiled():
        return rule_queryset(rule).count()

    def hand():
        return scalar(hand_sql)

    compiled(), hand()
    compiled_times, hand_times = [], []
    for _ in range(REPEAT):
        elapsed, compiled_count = timed(compiled)
        compiled_times.append(elapsed)
        elapsed, hand_count = timed(hand)
        hand_times.append(elapsed)
    compiled_time, hand_time = statistics.median(compiled_times), statistics.median(hand_times)
    ratio = compiled_time / hand_time if hand_time else float("nan")
    verdict = "ok" if ratio <= 1.5 else "SLOWER than target"
    print(
        f"   {label:<42} compiled {compiled_time * 1000:8.1f} ms ({compiled_count:,} profiles)  "
        f"hand SQL {hand_time * 1000:8.1f} ms ({hand_count:,})  ratio {ratio:4.2f}x {verdict}"
    )
    if compiled_count != hand_count:
        print(f"   !! {label}: compiled and hand-written SQL disagree")


def refresh_after_new_events(segment) -> None:
    from profiles.segments.membership import segment_refresh, segment_refresh_profiles

    started = time.perf_counter()
    first = segment_refresh(segment=segment)
    print(
        f"   first full refresh of 'jackets'            {time.perf_counter() - started:8.2f} s "
        f"({first.size:,} members)"
    )
    # Two jacket page views each for 500 random profiles: some enter the segment.
    touched = sorted(random.Random(7).sample(range(1, PROFILES + 1), NEW_EVENTS // 2))
    execute(
        """
        INSERT INTO profiles_event (profile_id, source_id, type, name, properties, context,
                                    message_id, timestamp, received_at)
        SELECT pid, 1, 'page', 'Page Viewed',
               '{"url": "https://shop.example/jackets/new"}', '{}', 'new-' || pid || '-' || n,
               now(), now()
        FROM unnest(%s::bigint[]) pid CROSS JOIN generate_series(1, 2) n
        """,
        [touched],
    )
    started = time.perf_counter()
    entered, exited = segment_refresh_profiles(segment, touched)
    print(
        f"   on-event refresh, {NEW_EVENTS:,} new events ({len(touched)} profiles) "
        f"{(time.perf_counter() - started) * 1000:8.1f} ms (+{entered} / -{exited})"
    )
    started = time.perf_counter()
    result = segment_refresh(segment=segment)
    print(
        f"   full refresh after the new events           {time.perf_counter() - started:8.2f} s "
        f"(+{result.entered} / -{result.exited}, {result.size:,} members)"
    )
    execute("DELETE FROM profiles_event WHERE message_id LIKE 'new-%%'")


def run() -> None:
    from profiles.models import Segment

    with bench_database() as name:
        print(f"   database {name}: {PROFILES:,} profiles, {EVENTS:,} events")
        Segment.objects.all().delete()
        valuable = Segment.objects.create(name="Valuable", rule=VALUABLE)
        jackets = Segment.objects.create(name="Jackets", rule=JACKETS)
        compare("trait + event count in window + consent", JACKETS, JACKETS_SQL)
        compare("negation (browsed, did not buy)", BROWSED_NOT_BOUGHT, BROWSED_NOT_BOUGHT_SQL)
        compare("nested segment", nested_rule(valuable.pk), NESTED_SQL)
        refresh_after_new_events(jackets)
        if os.environ.get("BENCH_COMPUTED") == "1":
            computed_traits_timing()


def computed_traits_timing() -> None:
    """Opt-in (it rewrites the generated computed traits): the nightly full recompute, and an
    incremental update of 1,000 profiles."""
    from profiles.segments.computed import computed_traits_recompute_all, computed_traits_update

    started = time.perf_counter()
    changed = computed_traits_recompute_all()
    print(
        f"   computed traits, full recompute             {time.perf_counter() - started:8.2f} s "
        f"({changed:,} profiles changed)"
    )
    ids = random.Random(11).sample(range(1, PROFILES + 1), 1000)
    started = time.perf_counter()
    computed_traits_update(profile_ids=ids)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"   computed traits, incremental 1,000 profiles {elapsed:8.1f} ms")
