"""The event table partitioned by month, next to a plain one: erasure at 1M and at 10M events,
retention of one month out of 12 (detaching, then dropping its partition, next to deleting a
month's rows), a 7-day segment with and without partition pruning, and processing with 10M
events stored.

One database, ``<database>_partitions``, re-created each run. BENCH_PARTITION_EVENTS (default
10,000,000) events over 12 months, one profile per 100 events, and one person with 10,000 events
over the year. Erasure and the partition drop are measured first at a tenth of the events,
then with all of them; processing (BENCH_PARTITION_MESSAGES staged messages, default 20,000) on the
partitioned table, then on the same events in a plain table (``events_unpartition``). Each
timing of a read or an erasure is the best of BENCH_REPEAT (default 3) runs, rolled back, and
processing the best of as many rounds;
retention is measured once, committed: the oldest month's partition dropped, then a month of
the plain table deleted in batches as retention did before partitions.

    BENCH_PARTITION_EVENTS=2000000 python -m tests.bench bench_partitions
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from tests.bench.bench_admin import bench_database, execute, scalar, secondary_indexes

EVENTS = int(os.environ.get("BENCH_PARTITION_EVENTS", 10_000_000))
MESSAGES = int(os.environ.get("BENCH_PARTITION_MESSAGES", 20_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 3))
PERSON_EVENTS = 10_000
MINUTES_A_YEAR = 365 * 24 * 60


class Rollback(Exception):
    pass


def best(measure, repeat: int = REPEAT) -> float:
    """The best time of ``measure`` run ``repeat`` times, each rolled back."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            with transaction.atomic():
                measure()
                times.append(time.perf_counter() - started)
                raise Rollback
        except Rollback:
            pass
    return min(times)


def generate(first: int, last: int, profiles: int, source_id: int) -> None:
    """Events ``first``..``last`` of the series, spread over the last 12 months."""
    indexes = secondary_indexes("profiles_event")
    for name, _ in indexes:
        execute(f'DROP INDEX "{name}"')
    execute(
        """
        INSERT INTO profiles_event (profile_id, source_id, type, name, properties, context,
                                    message_id, timestamp, received_at)
        SELECT 1 + (g %% %(profiles)s), %(source)s, 'track',
               (ARRAY['Page Viewed', 'Product Viewed', 'Added to Cart',
                      'Order Completed'])[1 + g %% 4],
               jsonb_build_object('sku', 'SKU-' || g %% 500), '{}'::jsonb, 'm' || g,
               now() - ((g * 7919) %% %(minutes)s) * interval '1 minute', now()
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
        """,
        {
            "profiles": profiles,
            "source": source_id,
            "minutes": MINUTES_A_YEAR,
            "first": first,
            "last": last,
        },
    )
    for _, definition in indexes:
        execute(definition)
    # Every table, as autovacuum would have by then: without statistics on the profiles, the
    # planner takes a batch of thousands for a handful and loops over the events per profile.
    execute("VACUUM ANALYZE")


def partitions_for_a_year() -> None:
    from profiles.eventstore import event_partitions_ensure

    now = timezone.now()
    event_partitions_ensure(now - timedelta(days=366), now)


def setup(profiles: int) -> tuple[int, int]:
    """A source, ``profiles`` profiles with a user id each, and the person with 10,000 events;
    the source's and the person's ids."""
    from profiles.models import Source

    partitions_for_a_year()
    # Through the model, so that the fields added to sources later get their defaults.
    source_id = Source.objects.create(
        name="Web shop", kind="website", write_key_hash="bench-p", write_key_prefix="bench"
    ).pk
    execute(
        """
        INSERT INTO profiles_profile (id, traits, computed_traits, trait_timestamps,
                                      first_seen_at, last_seen_at, created_at, updated_at)
        SELECT g, '{}'::jsonb, '{}'::jsonb, '{}'::jsonb, now() - interval '1 year', now(),
               now(), now()
        FROM generate_series(1, %s::bigint + 1) g
        """,
        [profiles],
    )
    execute("SELECT setval(pg_get_serial_sequence('profiles_profile', 'id'), %s)", [profiles + 1])
    execute(
        """
        INSERT INTO profiles_identity (profile_id, kind, value, source_id, first_seen_at,
                                       last_seen_at, created_at)
        SELECT g, 'user_id', 'user-' || g, %s, now(), now(), now()
        FROM generate_series(1, %s::bigint) g
        """,
        [source_id, profiles],
    )
    person = profiles + 1
    execute(
        """
        INSERT INTO profiles_event (profile_id, source_id, type, name, properties, context,
                                    message_id, timestamp, received_at)
        SELECT %s, %s, 'track', 'Page Viewed', '{}'::jsonb, '{}'::jsonb, 'person-' || g,
               now() - (g * 52) * interval '1 minute', now()
        FROM generate_series(1, %s) g
        """,
        [person, source_id, PERSON_EVENTS],
    )
    return source_id, person


def erase(person: int) -> float:
    from consent import registry
    from consent.registry import Subject
    from profiles.models import Event

    holder = next(holder for holder in registry.holders() if holder.model is Event)
    subject = Subject(profile_ids=frozenset([person]))
    return best(lambda: holder.erase(holder.find(subject), subject))


def oldest_month():
    """The oldest whole month of events (older, partial ones are dropped first, untimed)."""
    from profiles.eventstore import event_partitions, events_purge_before

    year_ago = timezone.now() - timedelta(days=365)
    for partial in [p for p in event_partitions() if p.start < year_ago]:
        events_purge_before(partial.end, batch_size=10_000)
    return event_partitions()[0]


def partition_drop() -> tuple[float, float, int]:
    """Retention of the oldest month on the partitioned table, as ``events_purge_before`` does
    it, timed in its two steps: the partition detached (the only one that locks the event
    table), then dropped (its files removed)."""
    from profiles.eventstore import partition_detach, retired_partitions_drop

    month = oldest_month()
    rows = scalar(f'SELECT count(*) FROM "{month.name}"')  # noqa: S608 - a partition name
    started = time.perf_counter()
    partition_detach(month.name)
    detached = time.perf_counter()
    retired_partitions_drop()
    return detached - started, time.perf_counter() - detached, rows


def rows_delete(month) -> tuple[float, float, int]:
    """Retention of a month on the plain table: its rows deleted in batches, committed, then
    the VACUUM that gives their space back (it reads every index of the whole table)."""
    from profiles.eventstore import events_purge_before

    execute("DELETE FROM profiles_event WHERE timestamp < %s", [month.start])
    execute("VACUUM profiles_event")
    started = time.perf_counter()
    rows = events_purge_before(month.end, batch_size=10_000)
    deleted = time.perf_counter() - started
    started = time.perf_counter()
    execute("VACUUM profiles_event")
    return deleted, time.perf_counter() - started, rows


def segment(pruning: bool) -> float:
    from profiles.segments.rules import rule_queryset

    rule = {"event": "Order Completed", "within_days": 7}

    def count():
        execute(f"SET LOCAL enable_partition_pruning = {'on' if pruning else 'off'}")
        rule_queryset(rule).count()

    return best(count)


def process(source_id: int, profiles: int, label: str) -> float:
    """Stage MESSAGES messages of known people, then time their processing (events, traits,
    and the refresh of the profiles they touched), after a warm-up of 1,000 others; the best
    rate of BENCH_REPEAT rounds, each with messages of its own: one round is too noisy to
    compare the two tables by."""
    from profiles.ingest.processing import pending_process

    stage(source_id, profiles, f"{label}-warm", 1_000)
    pending_process()
    rates = []
    for round_ in range(REPEAT):
        stage(source_id, profiles, f"{label}-{round_}", MESSAGES)
        started = time.perf_counter()
        processed = pending_process()
        elapsed = time.perf_counter() - started
        assert processed == MESSAGES, processed
        rates.append(MESSAGES / elapsed)
    return max(rates)


def stage(source_id: int, profiles: int, label: str, count: int) -> None:
    from profiles.ingest.collect import messages_collect

    rng = random.Random(label)
    for start in range(0, count, 500):
        batch = []
        for _ in range(min(500, count - start)):
            person = 1 + rng.randrange(profiles)
            message = {
                "userId": f"user-{person}",
                "messageId": f"{label}-{uuid.UUID(int=rng.getrandbits(128))}",
            }
            if rng.random() < 0.1:
                message.update(type="identify", traits={"plan": rng.choice(["free", "pro"])})
            else:
                message.update(type="track", event="Order Completed", properties={"total": 10})
            batch.append(message)
        messages_collect(source_id=source_id, messages=batch)


def run() -> None:
    from profiles.eventstore import event_table_partitioned, events_unpartition

    os.environ["CDPHUB_INGEST_PROCESSING"] = "off"
    from django.conf import settings

    settings.CDPHUB_INGEST_PROCESSING = "off"
    small = EVENTS // 10
    profiles = max(EVENTS // 100, 1)
    with bench_database("partitions"):
        execute("DROP SCHEMA public CASCADE")
        execute("CREATE SCHEMA public")
        connection.close()
    with bench_database("partitions"):
        assert event_table_partitioned()
        source_id, person = setup(profiles)
        figures = {}
        started = time.perf_counter()
        generate(1, small, profiles, source_id)
        print(f"   generated {small:,} events in {time.perf_counter() - started:.0f} s")
        figures["erase_small"] = erase(person)
        figures["detach_small"], figures["drop_small"], figures["rows_small"] = partition_drop()
        partitions_for_a_year()
        started = time.perf_counter()
        generate(small + 1, EVENTS, profiles, source_id)
        print(f"   generated {EVENTS - small:,} more in {time.perf_counter() - started:.0f} s")
        figures["erase_large"] = erase(person)
        figures["pruned"] = segment(pruning=True)
        figures["unpruned"] = segment(pruning=False)
        figures["detach_large"], figures["drop_large"], figures["rows_large"] = partition_drop()
        next_month = oldest_month()
        # Both tables hold the same events when processing is timed: the refresh of the
        # touched profiles reads all their events, so a month less would favour one of them.
        figures["processed_partitioned"] = process(source_id, profiles, "p")
        started = time.perf_counter()
        events_unpartition()
        execute("VACUUM ANALYZE profiles_event")
        print(f"   copied into a plain table in {time.perf_counter() - started:.0f} s")
        figures["processed_plain"] = process(source_id, profiles, "u")
        figures["delete_large"], figures["vacuum_large"], figures["rows_deleted"] = rows_delete(
            next_month
        )
    report(figures, small)


def report(f: dict, small: int) -> None:
    print(
        f"   erasure of a person with {PERSON_EVENTS:,} events: "
        f"{f['erase_small'] * 1000:,.0f} ms at {small:,} events, "
        f"{f['erase_large'] * 1000:,.0f} ms at {EVENTS:,} "
        f"({f['erase_large'] / f['erase_small']:.2f}x; goal < 1 s and <= 1.5x)"
    )
    deleting = f["delete_large"] + f["vacuum_large"]
    retiring = f["detach_large"] + f["drop_large"]
    print(
        "   retention of one month: the event table locked to detach the partition "
        f"{f['detach_small'] * 1000:,.1f} ms ({f['rows_small']:,} events) at {small:,} events, "
        f"{f['detach_large'] * 1000:,.1f} ms ({f['rows_large']:,} events) at {EVENTS:,}; "
        f"its files dropped after in {f['drop_small'] * 1000:,.0f} and "
        f"{f['drop_large'] * 1000:,.0f} ms (locking nothing else)"
    )
    print(
        f"   on the plain table, {f['rows_deleted']:,} events deleted in batches in "
        f"{f['delete_large']:,.1f} s and vacuumed in {f['vacuum_large']:,.1f} s: "
        f"{deleting / f['detach_large']:,.0f}x the detach, {deleting / retiring:,.0f}x detach "
        "and drop (goal >= 100x)"
    )
    print(
        f"   7-day segment at {EVENTS:,} events: {f['pruned'] * 1000:,.0f} ms with pruning, "
        f"{f['unpruned'] * 1000:,.0f} ms without ({f['unpruned'] / f['pruned']:.1f}x)"
    )
    print(
        f"   processing with {EVENTS:,} events stored: partitioned "
        f"{f['processed_partitioned']:,.0f} messages/s, plain {f['processed_plain']:,.0f} "
        f"({f['processed_partitioned'] / f['processed_plain']:.2f}x; goal >= 1.0x)"
    )
