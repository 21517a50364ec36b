"""Ingest: N clients post /v1/batch of 100 events to gunicorn, then bulk processing, vs COPY;
then single-message requests to /v1/t as browsers send them, flat out and at half that rate.

Runs against a dedicated database (``<your database>_bench``, dropped and re-created) with three
dynamic segments and the population's history of the day before (BENCH_INGEST_HISTORY events,
default as many as the run, processed and analyzed before the clock starts). Prints accepted
events/s (HTTP, validated and staged), processed events/s (identity resolution, events, traits,
DMP visitors, then the computed traits and segment memberships of the touched profiles: the
clock stops when all of it is done) and PostgreSQL's raw COPY rate for the same rows in the
same run, with the ratios; the accepted rate again with the README's deployment without a
broker (gunicorn_conf: processing in one process beside the web workers, busy meanwhile);
then the requests/s of single calls (BENCH_SINGLE_CALLS, staged
after the processing above) and their p50/p99 latency at half that rate. Tune with
BENCH_INGEST_EVENTS, BENCH_INGEST_CLIENTS, BENCH_INGEST_SERVER_WORKERS,
BENCH_INGEST_SERVER_THREADS, BENCH_INGEST_PROCESSORS and BENCH_INGEST_PROCESS_BATCH (messages
per processing transaction; default CDPHUB_INGEST_PROCESS_BATCH_SIZE)."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from urllib.parse import urlsplit

import psycopg
import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

BATCH = 100
PAGES = ["/", "/jackets", "/jackets/parka-1", "/shoes", "/sale", "/basket", "/checkout"]
EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Searched"]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def make_batch(rng: random.Random, people: int, sent_at: str) -> bytes:
    """100 realistic messages over a population with repeat visitors: half of the people are
    known (userId), everyone has a stable anonymous id; identify carries e-mail and traits."""
    messages = []
    for _ in range(BATCH):
        person = rng.randrange(people)
        known = person % 2 == 0
        base = {
            "anonymousId": f"anon-{person}",
            "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": sent_at,
            "context": {
                "ip": f"10.0.{person % 250}.{person % 199}",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
                "page": {"url": f"https://shop.example.com{rng.choice(PAGES)}"},
                "library": {"name": "analytics.js", "version": "5.2.0"},
            },
        }
        if known:
            base["userId"] = f"user-{person}"
        roll = rng.random()
        if roll < 0.15:
            base.update(
                type="identify",
                traits={
                    "email": f"person{person}@example.com",
                    "firstName": "Anna",
                    "plan": rng.choice(["free", "pro"]),
                },
            )
        elif roll < 0.65:
            base.update(
                type="track",
                event=rng.choice(EVENTS),
                properties={"sku": f"SKU-{rng.randint(1, 500)}", "price": rng.randint(5, 300)},
            )
        else:
            base.update(type="page", name="Shop", properties={"path": rng.choice(PAGES)})
        messages.append(base)
    return json.dumps({"batch": messages, "sentAt": sent_at}).encode()


def client_process(url, key, batches, people, seed, start, results):
    rng = random.Random(seed)
    sent_at = datetime.now(UTC).isoformat()
    bodies = [make_batch(rng, people, sent_at) for _ in range(batches)]
    session = requests.Session()
    session.auth = (key, "")
    headers = {"Content-Type": "application/json"}
    start.wait()
    failures = 0
    for body in bodies:
        response = session.post(f"{url}/v1/batch", data=body, headers=headers, timeout=60)
        if response.status_code != 200:
            failures += 1
    results.put(failures)


def batch_clients(ctx, url, key, batches, people, clients) -> tuple[int, float]:
    """``clients`` processes posting ``batches`` batches each, started together; how many
    requests failed and how many seconds they took."""
    start, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [
        ctx.Process(target=client_process, args=(url, key, batches, people, seed, start, results))
        for seed in range(clients)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    started = time.perf_counter()
    failures = sum(results.get() for _ in procs)
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.join()
    return failures, seconds


def single_call(rng: random.Random, key: str, people: int) -> bytes:
    """One analytics.js call as a browser sends it: the message with the write key, as
    text/plain JSON, to /v1/t."""
    person = rng.randrange(people)
    message = {
        "writeKey": key,
        "type": "track",
        "event": rng.choice(EVENTS),
        "anonymousId": f"anon-{person}",
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {"sku": f"SKU-{rng.randint(1, 500)}", "price": rng.randint(5, 300)},
        "context": {
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
            "page": {"url": f"https://shop.example.com{rng.choice(PAGES)}"},
            "library": {"name": "analytics.js", "version": "npm:next-1.81.0"},
        },
    }
    return json.dumps(message).encode()


def single_client_process(url, key, calls, people, seed, interval, start, results):
    """``calls`` single-message requests, back to back (``interval`` 0) or one every
    ``interval`` seconds on a fixed schedule (latency is measured from the scheduled time, so
    a slow answer delays the next ones and counts against them too)."""
    rng = random.Random(seed)
    bodies = [single_call(rng, key, people) for _ in range(calls)]
    # The standard library's client on one kept-alive connection, as a browser would hold one:
    # a fraction of the CPU of a full-featured client, which shares the machine's cores with
    # the server here.
    address = urlsplit(url)
    http = HTTPConnection(address.hostname, address.port, timeout=60)
    headers = {"Content-Type": "text/plain", "Origin": "https://shop.example.com"}
    latencies, failures = [], 0
    start.wait()
    began = time.perf_counter()
    for index, body in enumerate(bodies):
        scheduled = began + index * interval
        if interval and (wait := scheduled - time.perf_counter()) > 0:
            time.sleep(wait)
        sent = scheduled if interval else time.perf_counter()
        http.request("POST", "/v1/t", body=body, headers=headers)
        response = http.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        failures += response.status != 200
    http.close()
    results.put((failures, latencies))


def single_calls(ctx, url, key, people, clients, calls, rate=0.0):
    """Requests per second of ``calls`` single-message requests from ``clients`` processes
    (paced at ``rate`` requests/s in all if given), their latencies and failures."""
    per_client = calls // clients
    interval = clients / rate if rate else 0.0
    start, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=single_client_process,
            args=(url, key, per_client, people, 10_000 + seed, interval, start, results),
        )
        for seed in range(clients)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    started = time.perf_counter()
    answers = [results.get() for _ in procs]
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.join()
    latencies = sorted(latency for _, client_latencies in answers for latency in client_latencies)
    failures = sum(failures for failures, _ in answers)
    return per_client * clients / seconds, latencies, failures


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))]


def processor_process(database_url, start, results):
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from profiles.ingest.processing import pending_process

    start.wait()
    try:
        # 0: the configured CDPHUB_INGEST_PROCESS_BATCH_SIZE, as in production.
        results.put(pending_process(batch_size=env_int("BENCH_INGEST_PROCESS_BATCH", 0) or None))
    except BaseException:
        results.put(None)  # the run is void: say so rather than wait for this process forever
        raise


def bench_database() -> tuple[str, str]:
    from tests.server import current_database_url

    name = f"{connection.settings_dict['NAME']}_bench"
    with psycopg.connect(current_database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, current_database_url(name)


# A marketing team's usual segments: processing refreshes each for the profiles it touched.
SEGMENTS = {
    "Pro plan": {"trait": "plan", "op": "eq", "value": "pro"},
    "Shoppers this week": {"event": "Product Added", "within_days": 7},
    "Repeat buyers": {"computed": "order_count", "op": "gte", "value": 2},
}


def create_segments() -> None:
    from profiles.models import Segment

    for name, rule in SEGMENTS.items():
        Segment.objects.create(name=name, rule=rule)


def load_history(source_id: int, events: int, people: int) -> float:
    """Yesterday's events of the same population, processed before the clock starts and
    analyzed, as autovacuum would have done by then: the timed run meets a hub in use (known
    profiles, identities, events, memberships and planner statistics), not empty tables.
    Returns how long processing the history took."""
    from django.conf import settings

    from profiles.ingest.collect import messages_collect
    from profiles.ingest.processing import pending_process

    settings.CDPHUB_INGEST_PROCESSING = "off"
    rng = random.Random(1_000_003)  # not one of the clients' seeds (0..N)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for _ in range(events // BATCH):
        batch = json.loads(make_batch(rng, people, yesterday))["batch"]
        messages_collect(source_id=source_id, messages=batch)
    started = time.perf_counter()
    pending_process()
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return elapsed


def use_database(name: str) -> None:
    connections["default"].close()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def copy_rate(database_url: str, repeats: int = 3) -> float:
    """Raw COPY of the same staged rows into a plain table of the same columns; the median of
    a few runs (the machine may be shared: one run alone is noisy)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT source_id, message_id, type, payload::text, timestamp, received_at "
            "FROM profiles_pendingmessage"
        ).fetchall()
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(escape_copy(value) for value in row) + "\n")
        data = buffer.getvalue().encode()
        rates = []
        for _ in range(repeats):
            conn.execute(
                "CREATE TABLE copy_bench (source_id bigint, message_id text, type text, "
                "payload jsonb, timestamp timestamptz, received_at timestamptz)"
            )
            conn.commit()
            started = time.perf_counter()
            with conn.cursor() as cursor, cursor.copy("COPY copy_bench FROM STDIN") as copy:
                copy.write(data)
            conn.commit()
            rates.append(len(rows) / (time.perf_counter() - started))
            conn.execute("DROP TABLE copy_bench")
            conn.commit()
    return statistics.median(rates)


def escape_copy(value) -> str:
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def run() -> None:
    from tests.server import running_server

    total = env_int("BENCH_INGEST_EVENTS", 200_000)
    clients = env_int("BENCH_INGEST_CLIENTS", 8)
    workers = env_int("BENCH_INGEST_SERVER_WORKERS", 2)
    threads = env_int("BENCH_INGEST_SERVER_THREADS", 4)
    processors = env_int("BENCH_INGEST_PROCESSORS", 2)
    # About ten events per person: most messages come from repeat visitors.
    people = max(total // 10, 100)
    batches = total // BATCH // clients
    name, database_url = bench_database()
    original = connection.settings_dict["NAME"]
    try:
        use_database(name)
        call_command("migrate", verbosity=0)
        from profiles.services import source_create

        source, key = source_create(name="Benchmark", allowed_origins=["https://shop.example.com"])
        # The hub's whole rate, not the source limit's; the per-sender limit stays on (ten
        # events per person are far under it) and costs the request path what it costs.
        type(source).objects.filter(pk=source.pk).update(rate_limit_per_second=0)
        create_segments()
        history = env_int("BENCH_INGEST_HISTORY", total)
        history_seconds = load_history(source.pk, history, people)
        connections["default"].close()
        ctx = multiprocessing.get_context("spawn")
        env = {
            "CDPHUB_INGEST_PROCESSING": "off",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-" + "x" * 60,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
        }
        with running_server(
            database_url=database_url, workers=workers, threads=threads, env=env
        ) as url:
            failures, accept_seconds = batch_clients(ctx, url, key, batches, people, clients)
        sent = batches * clients * BATCH
        accepted = sent / accept_seconds
        # Measured on the rows just staged, before processing consumes them.
        copy = copy_rate(database_url)

        start, results = ctx.Barrier(processors + 1), ctx.Queue()
        procs = [
            ctx.Process(target=processor_process, args=(database_url, start, results))
            for _ in range(processors)
        ]
        for proc in procs:
            proc.start()
        start.wait()
        started = time.perf_counter()
        counts = [results.get() for _ in procs]
        if None in counts:
            raise RuntimeError("a processing process failed (its traceback is above)")
        processed_count = sum(counts)
        process_seconds = time.perf_counter() - started
        for proc in procs:
            proc.join()
        processed = processed_count / process_seconds
        # Browsers' single calls, staged on top of the processed events (not processed).
        with running_server(
            database_url=database_url, workers=workers, threads=threads, env=env
        ) as url:
            single_count = env_int("BENCH_SINGLE_CALLS", 20_000)
            single_rate, _, single_failures = single_calls(
                ctx, url, key, people, clients, single_count
            )
            paced_rate, latencies, paced_failures = single_calls(
                ctx, url, key, people, clients, single_count // 2, rate=single_rate / 2
            )
        # The deployment the README recommends without a broker: gunicorn with cdphub's
        # configuration, which runs processing in one process beside the web workers.
        beside_env = {**env, "CDPHUB_INGEST_PROCESSING": "process", "CDPHUB_DELIVERY": "process"}
        with running_server(
            database_url=database_url,
            workers=workers,
            threads=threads,
            env=beside_env,
            config="python:cdphub.gunicorn_conf",
        ) as url:
            beside_failures, beside_seconds = batch_clients(
                ctx, url, key, max(batches // 2, 1), people, clients
            )
        beside = max(batches // 2, 1) * clients * BATCH / beside_seconds
        with psycopg.connect(database_url) as conn:
            events, profiles, identities = conn.execute(
                "SELECT (SELECT count(*) FROM profiles_event), "
                "(SELECT count(*) FROM profiles_profile WHERE merged_into_id IS NULL), "
                "(SELECT count(*) FROM profiles_identity)"
            ).fetchone()
        print(
            f"  events sent: {sent} in {batches * clients} batches of {BATCH}, "
            f"{clients} clients, {workers} gunicorn workers x {threads} threads, "
            f"{failures} failed requests"
        )
        print(f"  accepted:  {accepted:10,.0f} events/s  ({accepted / copy:.3f} x COPY)")
        print(
            f"  beside:    {beside:10,.0f} events/s accepted while the processing process of "
            f"gunicorn_conf processes them ({beside / accepted:.2f} x the rate with processing "
            f"off), {beside_failures} failed requests"
        )
        print(
            f"  processed: {processed:10,.0f} events/s  ({processed / copy:.3f} x COPY), "
            f"{processors} processes: {events} events, {profiles} profiles, "
            f"{identities} identities"
        )
        print(
            f"  single:    {single_rate:10,.0f} requests/s of one message to /v1/t "
            f"({single_rate / copy:.3f} x COPY), {clients} clients, {single_failures} failed"
        )
        print(
            f"  latency:   p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 "
            f"{percentile(latencies, 0.99) * 1000:.1f} ms at {paced_rate:,.0f} requests/s "
            f"(half the rate above), {paced_failures} failed"
        )
        print(f"  COPY:      {copy:10,.0f} rows/s (same rows into a plain table, median of 3)")
        print(
            f"  history:   {history} events of the day before processed first "
            f"({history / history_seconds:,.0f} events/s in one process, into empty tables)"
        )
    finally:
        use_database(original)
        connections["default"].close()
