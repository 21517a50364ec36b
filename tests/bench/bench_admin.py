"""Admin pages at 10k and at 1M profiles: the dashboard, the profile list searched by e-mail, by
name, by part of an e-mail and with a typo ("did you mean"), and the profile 360 page must stay
flat as tables grow (target: large / small <= 1.5x).

Two databases, ``<database>_admin_small`` (BENCH_ADMIN_SMALL, default 10,000 profiles) and
``<database>_admin_large`` (BENCH_ADMIN_LARGE, default 1,000,000), each with an e-mail identity
per profile and BENCH_ADMIN_EVENTS_PER_PROFILE (default 10) events per profile over 60 days, are
generated in SQL once and reused. Each page is requested through Django's test client as a
superuser; the best of BENCH_REPEAT (default 5) runs after a warm-up is reported. The dashboard
is measured cold: its cache is cleared before every run.

    BENCH_ADMIN_LARGE=200000 python -m tests.bench bench_admin
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

SMALL = int(os.environ.get("BENCH_ADMIN_SMALL", 10_000))
LARGE = int(os.environ.get("BENCH_ADMIN_LARGE", 1_000_000))
EVENTS_PER_PROFILE = int(os.environ.get("BENCH_ADMIN_EVENTS_PER_PROFILE", 10))
REPEAT = int(os.environ.get("BENCH_REPEAT", 5))
# Generated data is reused while its shape is the same: a new version regenerates it.
DATA_VERSION = "bench_admin 2: names from lists, one unique name"
FIRST_NAMES = [
    "Anna",
    "Bram",
    "Carla",
    "Daan",
    "Emma",
    "Femke",
    "Gijs",
    "Hanna",
    "Ivo",
    "Julia",
    "Kees",
    "Lotte",
    "Milan",
    "Noor",
    "Olaf",
    "Petra",
    "Ruben",
    "Sanne",
    "Tim",
    "Vera",
    "Wouter",
    "Yara",
    "Zoe",
    "Lars",
    "Eva",
    "Thijs",
    "Iris",
    "Sem",
    "Fleur",
    "Bas",
]
LAST_NAMES = (
    (
        "Jansen de-Vries van-den-Berg Bakker Visser Smit Meijer de-Boer Mulder de-Groot Bos Vos "
        "Peters Hendriks van-Leeuwen Dekker Brouwer de-Wit Dijkstra Smits de-Graaf van-der-Meer "
        "Kok Jacobs de-Haan Vermeulen van-den-Heuvel van-der-Veen van-den-Broek de-Bruijn"
    )
    .replace("-", " ")
    .split(" ")
)
# The probe profile's name is one no other profile has, as a person searched for usually is.
PROBE_NAME = {"firstName": "Marit", "lastName": "Oosterhuis-Bakker"}


@contextmanager
def bench_database(suffix: str):
    """Point the default connection at ``<database>_<suffix>`` (created and migrated when
    needed), kept between runs so that generated data is reused."""
    settings_dict = connections["default"].settings_dict
    original = settings_dict["NAME"]
    name = f"{original}_{suffix}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0)
        yield
    finally:
        connection.close()
        settings_dict["NAME"] = original


@contextmanager
def sized_database(label: str, profiles: int):
    """Point the default connection at a database holding ``profiles`` generated profiles."""
    with bench_database(f"admin_{label}"):
        generated = scalar("SELECT obj_description('profiles_profile'::regclass, 'pg_class')")
        if generated != DATA_VERSION or scalar("SELECT count(*) FROM profiles_profile") != profiles:
            generate(profiles)
            execute(f"COMMENT ON TABLE profiles_profile IS '{DATA_VERSION}'")
        yield


def scalar(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def execute(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def generate(profiles: int) -> None:
    started = time.perf_counter()
    for table in ("profiles_event", "profiles_identity", "profiles_profile", "profiles_source"):
        execute(f"TRUNCATE {table} CASCADE")
    execute("SET maintenance_work_mem = '1GB'")
    from profiles.models import Source

    # Through the ORM, so that columns added to sources later get their defaults here too.
    Source.objects.bulk_create(
        [
            Source(
                name="Web shop", kind="shop", write_key_hash="bench-a", write_key_prefix="bench"
            ),
            Source(name="App", kind="app", write_key_hash="bench-b", write_key_prefix="bench"),
        ]
    )
    source_ids = [row for row in ids("profiles_source")]
    execute(
        """
        INSERT INTO profiles_profile (id, traits, computed_traits, trait_timestamps,
                                      first_seen_at, last_seen_at, created_at, updated_at)
        SELECT g, jsonb_build_object('email', 'user' || g || '@example.com',
                                     'firstName', (%(first)s::text[])[1 + g %% %(firsts)s],
                                     'lastName', (%(last)s::text[])[1 + (g / 7) %% %(lasts)s],
                                     'country', (ARRAY['NL', 'BE', 'DE'])[1 + g %% 3]),
               jsonb_build_object('lifetime_value', g %% 900, 'order_count', g %% 7),
               '{}'::jsonb, now() - interval '90 days', now() - (g %% 60) * interval '1 day',
               now() - (g %% 120) * interval '1 day', now()
        FROM generate_series(1, %(profiles)s::bigint) g
        """,
        {
            "profiles": profiles,
            "first": FIRST_NAMES,
            "firsts": len(FIRST_NAMES),
            "last": LAST_NAMES,
            "lasts": len(LAST_NAMES),
        },
    )
    execute(
        "UPDATE profiles_profile SET traits = traits || %s::jsonb WHERE id = %s",
        [json.dumps(PROBE_NAME), profiles // 2],
    )
    execute("SELECT setval(pg_get_serial_sequence('profiles_profile', 'id'), %s)", [profiles])
    execute(
        """
        INSERT INTO profiles_identity (profile_id, kind, value, source_id, first_seen_at,
                                       last_seen_at, created_at)
        SELECT g, 'email', 'user' || g || '@example.com', %s, now(), now(), now()
        FROM generate_series(1, %s::bigint) g
        """,
        [source_ids[0], profiles],
    )
    from profiles.eventstore import event_partitions_ensure

    event_partitions_ensure(timezone.now() - timedelta(days=61), timezone.now())
    indexes = secondary_indexes("profiles_event")
    for name, _ in indexes:
        execute(f'DROP INDEX "{name}"')
    execute(
        """
        INSERT INTO profiles_event (profile_id, source_id, type, name, properties, context,
                                    message_id, timestamp, received_at)
        SELECT 1 + (g %% %(profiles)s), CASE WHEN g %% 3 = 0 THEN %(app)s ELSE %(web)s END,
               'track', (ARRAY['Page Viewed', 'Product Viewed', 'Added to Cart',
                               'Order Completed'])[1 + g %% 4],
               jsonb_build_object('sku', 'SKU-' || g %% 500), '{}'::jsonb, 'm' || g,
               now() - ((g * 7919) %% (60 * 24 * 60)) * interval '1 minute', now()
        FROM generate_series(1, %(events)s::bigint) g
        """,
        {
            "profiles": profiles,
            "events": profiles * EVENTS_PER_PROFILE,
            "app": source_ids[1],
            "web": source_ids[0],
        },
    )
    for _, definition in indexes:
        execute(definition)
    rollup_rebuild()
    execute("VACUUM ANALYZE")
    print(f"   generated {profiles:,} profiles in {time.perf_counter() - started:.0f} s")


def rollup_rebuild() -> None:
    # What the scheduled task does every few minutes in production.
    from profiles.rollups import event_daily_counts_refresh

    event_daily_counts_refresh(recompute_all=True)


def secondary_indexes(table: str) -> list[tuple[str, str]]:
    """Indexes that back no constraint: dropped for a bulk load and rebuilt after (faster).
    The index of a partitioned table is defined ``ON ONLY`` the table: rebuilt without it, so
    that every partition gets its own again."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            [table],
        )
        return [(name, sql.replace(" ON ONLY ", " ON ", 1)) for name, sql in cursor.fetchall()]


def ids(table: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} ORDER BY id")  # noqa: S608 - fixed names
        return [row[0] for row in cursor.fetchall()]


def superuser_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def best_time(request, *, cold: bool = False) -> tuple[float, int]:
    """Best wall time over REPEAT runs (after a warm-up) and the queries of one run."""
    request()
    best = float("inf")
    for _ in range(REPEAT):
        if cold:
            cache.clear()
        started = time.perf_counter()
        request()
        best = min(best, time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        if cold:
            cache.clear()
        request()
    return best, len(queries)


def measure(profiles: int) -> dict[str, tuple[float, int]]:
    client = superuser_client()
    probe = profiles // 2

    def get(url: str):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    return {
        "dashboard (cold)": best_time(lambda: get("/admin/"), cold=True),
        "profile list, search by e-mail": best_time(
            lambda: get(f"/admin/profiles/profile/?q=User{probe}@Example.com")
        ),
        "profile list, search by name": best_time(
            lambda: get("/admin/profiles/profile/?q=Oosterhuis-Bakker")
        ),
        "profile list, part of an e-mail": best_time(
            lambda: get(f"/admin/profiles/profile/?q=user{probe}@exa")
        ),
        "profile list, did you mean": best_time(
            lambda: get("/admin/profiles/profile/?q=Oosterhuis-Bakkr")
        ),
        "profile list, first page": best_time(lambda: get("/admin/profiles/profile/")),
        "profile 360 page": best_time(lambda: get(f"/admin/profiles/profile/{probe}/change/")),
    }


def run() -> None:
    results = {}
    for label, size in (("small", SMALL), ("large", LARGE)):
        with sized_database(label, size):
            results[label] = measure(size)
    print(f"   {'page':34} {SMALL:>12,} {LARGE:>12,}   ratio (target <= 1.5x)")
    for page, (small, small_queries) in results["small"].items():
        large, large_queries = results["large"][page]
        print(
            f"   {page:34} {small * 1000:>9.1f} ms {large * 1000:>9.1f} ms   {large / small:5.2f}x"
            f"   ({small_queries} / {large_queries} queries)"
        )
