"""Destinations: events forwarded to a local webhook next to events accepted; latency from
collection to receipt at a steady rate; an audience sync's daily change.

1. Forwarding: ``BENCH_DESTINATION_EVENTS`` events (default 50,000) posted to ``/v1/batch``
   through gunicorn (8 clients, batches of 100): accepted per second. Processed (which writes
   the outbox), the people granted the destination's purpose, then one sender sends them to a
   webhook receiver on this machine in batches of 1,000 (the most a destination takes):
   forwarded per second, and the ratio (goal >= 0.5 x accepted).
2. Latency: gunicorn with processing and delivery in background threads, as without a broker;
   four clients post 10 events every 40 ms each, 10 ms apart (1,000 events/s together) for
   ``BENCH_LATENCY_SECONDS`` (default 20); each event carries the time it was sent, the
   receiver notes when it arrives: p50 and p99 (goal p99 < 5 s).
3. Audience sync: a segment of ``BENCH_AUDIENCE`` members (default 100,000) with the purpose,
   loaded once; then 1% of it changes (half leave, as many others join) and the segment is
   refreshed: the rows queued (goal: only the changes) and the time to queue and send them.

    BENCH_DESTINATION_EVENTS=20000 BENCH_AUDIENCE=20000 python -m tests.bench bench_destinations
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
import uuid
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from tests.bench.bench_ingest import (
    BATCH,
    batch_clients,
    bench_database,
    env_int,
    percentile,
    use_database,
)

PURPOSE = "analytics"
SENDER_BATCH = 1000


class Receiver:
    """A webhook receiver: counts the items it is sent and, for those that carry the time
    they were sent (``properties.sentAt``), how long they took to arrive."""

    def __init__(self) -> None:
        self.items = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                arrived = time.time()
                batch = json.loads(body)["batch"]
                sent = [item.get("properties", {}).get("sentAt") for item in batch]
                with receiver.lock:
                    receiver.items += len(batch)
                    receiver.latencies.extend(arrived - s for s in sent if s)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def grant_everyone() -> None:
    """The purpose granted to every profile, in SQL (a consent record and its state each)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH records AS (
                INSERT INTO consent_consentrecord (profile_id, identifier_kind,
                    identifier_value, purpose_id, status, occurred_at, recorded_at, source,
                    method, user_agent, form_url, tcf_string)
                SELECT p.id, '', '', (SELECT id FROM consent_purpose WHERE code = %s),
                       'granted', now(), now(), 'bench', 'api', '', '', ''
                FROM profiles_profile p
                WHERE NOT EXISTS (SELECT FROM consent_consentstate s WHERE s.profile_id = p.id)
                RETURNING id, profile_id, purpose_id
            )
            INSERT INTO consent_consentstate (profile_id, purpose_id, status, record_id,
                updated_at)
            SELECT profile_id, purpose_id, 'granted', id, now() FROM records
            """,
            [PURPOSE],
        )
        cursor.execute("ANALYZE")


def pending_deliveries() -> int:
    from cdphub.models import Delivery

    return Delivery.objects.filter(status=Delivery.Status.PENDING).count()


def send_all() -> float:
    """Send everything waiting, as one sender does; returns the seconds it took."""
    from cdphub.delivery import deliveries_send

    started = time.perf_counter()
    while deliveries_send():
        pass
    return time.perf_counter() - started


def forwarding(ctx, url, key, total, people) -> tuple[float, int]:
    """Accepted events per second; then the events processed into the outbox."""
    clients = 8
    batches = total // BATCH // clients
    failures, seconds = batch_clients(ctx, url, key, batches, people, clients)
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return batches * clients * BATCH / seconds, batches * clients * BATCH


STEADY_CLIENTS = 4


def steady_client(url, key, people, seconds, results, offset=0):
    """10 events every 40 ms on one kept-alive connection (``STEADY_CLIENTS`` of them, 10 ms
    apart: 1,000 events/s together, and one slow answer does not hold back the others), each
    event with the time it was sent."""
    rng = random.Random(77 + offset)
    address = urlsplit(url)
    http = HTTPConnection(address.hostname, address.port, timeout=60)
    headers = {"Content-Type": "application/json", "X-Write-Key": key}
    began = time.perf_counter()
    sent = failures = 0
    tick = 0
    while time.perf_counter() - began < seconds:
        due = began + offset * 0.01 + tick * 0.01 * STEADY_CLIENTS
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        now = time.time()
        batch = [
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": f"anon-{rng.randrange(people)}",
                "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "properties": {"sentAt": now},
            }
            for _ in range(10)
        ]
        http.request("POST", "/v1/batch", body=json.dumps({"batch": batch}), headers=headers)
        response = http.getresponse()
        response.read()
        failures += response.status != 200
        sent += len(batch)
        tick += 1
    http.close()
    results.put((sent, failures, time.perf_counter() - began))


def audience_sync(receiver: Receiver, size: int) -> dict:
    """A segment of ``size`` members with the purpose, synced; then 1% of it changes."""
    from cdphub.models import Delivery
    from profiles.destinations.audience import audience_syncs_queue
    from profiles.destinations.services import destination_create
    from profiles.models import Segment
    from profiles.segments.membership import segment_refresh

    change = size // 100
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO profiles_profile (traits, computed_traits, trait_timestamps,
                first_seen_at, last_seen_at, created_at, updated_at)
            SELECT jsonb_build_object('tier', CASE WHEN g <= %s THEN 'gold' ELSE 'silver' END,
                                      'email', 'member' || g || '@example.com'),
                   '{}', '{}', now(), now(), now(), now()
            FROM generate_series(1, %s) g
            """,
            [size, size + change],
        )
    grant_everyone()
    segment = Segment.objects.create(
        name="Gold tier", rule={"trait": "tier", "op": "eq", "value": "gold"}
    )
    started = time.perf_counter()
    segment_refresh(segment=segment)
    refresh_seconds = time.perf_counter() - started
    started = time.perf_counter()
    destination, _ = destination_create(
        name="Ad audience",
        kind="webhook",
        config={"url": receiver.url},
        purpose_code=PURPOSE,
        segment=segment,
        batch_size=SENDER_BATCH,
    )
    audience_syncs_queue(segment.pk)
    load_queued = Delivery.objects.filter(destination=destination).count()
    load_seconds = time.perf_counter() - started + send_all()

    # The day's change: the first 1% leave the tier, as many others join it.
    before = Delivery.objects.filter(destination=destination).count()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE profiles_profile SET traits = traits || jsonb_build_object('tier',
                CASE traits->>'tier' WHEN 'gold' THEN 'silver' ELSE 'gold' END)
            WHERE id IN (SELECT id FROM profiles_profile WHERE traits->>'tier' = 'gold'
                         ORDER BY id LIMIT %s)
               OR id IN (SELECT id FROM profiles_profile WHERE traits->>'tier' = 'silver'
                         ORDER BY id LIMIT %s)
            """,
            [change // 2, change - change // 2],
        )
    started = time.perf_counter()
    segment_refresh(segment=segment)  # its commit tells the sync, which queues the changes
    changed_queued = Delivery.objects.filter(destination=destination).count() - before
    change_seconds = time.perf_counter() - started + send_all()
    return {
        "refresh_seconds": refresh_seconds,
        "size": size,
        "load_queued": load_queued,
        "load_seconds": load_seconds,
        "change": change,
        "changed_queued": changed_queued,
        "change_seconds": change_seconds,
    }


def run() -> None:
    from profiles.destinations.services import destination_create
    from profiles.ingest.processing import pending_process
    from profiles.services import source_create
    from tests.server import running_server

    total = env_int("BENCH_DESTINATION_EVENTS", 50_000)
    latency_seconds = env_int("BENCH_LATENCY_SECONDS", 20)
    audience = env_int("BENCH_AUDIENCE", 100_000)
    people = max(total // 10, 100)
    name, database_url = bench_database()
    original = connection.settings_dict["NAME"]
    saved = {
        key: getattr(settings, key)
        for key in (
            "CDPHUB_INGEST_PROCESSING",
            "CDPHUB_DELIVERY",
            "CDPHUB_OUTBOUND_ALLOWLIST",
            "CDPHUB_MIN_AUDIENCE_SIZE",
        )
    }
    receiver = Receiver()
    try:
        use_database(name)
        call_command("migrate", verbosity=0)
        settings.CDPHUB_INGEST_PROCESSING = "off"
        settings.CDPHUB_DELIVERY = "off"
        settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
        source, key = source_create(name="Benchmark")
        type(source).objects.filter(pk=source.pk).update(rate_limit_per_second=0)
        destination, _ = destination_create(
            name="Webhook",
            kind="webhook",
            config={"url": receiver.url},
            purpose_code=PURPOSE,
            batch_size=SENDER_BATCH,
        )
        ctx = multiprocessing.get_context("spawn")
        env = {
            "CDPHUB_INGEST_PROCESSING": "off",
            "CDPHUB_DELIVERY": "off",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-" + "x" * 60,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
        }
        connection.close()
        with running_server(database_url=database_url, workers=2, threads=4, env=env) as url:
            accepted, sent = forwarding(ctx, url, key, total, people)
        pending_process()
        grant_everyone()
        queued = pending_deliveries()
        forward_seconds = send_all()
        forwarded = receiver.items / forward_seconds
        print(
            f"  accepted:  {accepted:10,.0f} events/s ({sent:,} events through gunicorn, "
            "8 clients, batches of 100)"
        )
        print(
            f"  forwarded: {forwarded:10,.0f} events/s to a webhook in batches of "
            f"{SENDER_BATCH:,}, one sender ({receiver.items:,} of {queued:,} queued), "
            f"{forwarded / accepted:.2f} x accepted (goal >= 0.5)"
        )

        # Steady 1,000 events/s with processing and delivery running as without a broker.
        receiver.items, receiver.latencies = 0, []
        steady = {
            **env,
            "CDPHUB_INGEST_PROCESSING": "background",
            "CDPHUB_DELIVERY": "background",
            "CDPHUB_OUTBOUND_ALLOWLIST": "127.0.0.1",
            "CELERY_BROKER_URL": "",
        }
        connection.close()
        with running_server(database_url=database_url, workers=2, threads=4, env=steady) as url:
            results = ctx.Queue()
            clients = [
                ctx.Process(
                    target=steady_client, args=(url, key, people, latency_seconds, results, n)
                )
                for n in range(STEADY_CLIENTS)
            ]
            for client in clients:
                client.start()
            answers = [results.get() for _ in clients]
            for client in clients:
                client.join()
            steady_sent = sum(sent for sent, _, _ in answers)
            steady_failures = sum(failures for _, failures, _ in answers)
            steady_elapsed = max(elapsed for _, _, elapsed in answers)
            deadline = time.monotonic() + 60
            while receiver.items < steady_sent and time.monotonic() < deadline:
                time.sleep(0.2)
        from cdphub.models import Delivery

        not_sent = Delivery.objects.filter(status=Delivery.Status.SKIPPED).count()
        latencies = sorted(receiver.latencies)
        print(
            f"  latency:   p50 {percentile(latencies, 0.5):.2f} s, p99 "
            f"{percentile(latencies, 0.99):.2f} s from collection to receipt at "
            f"{steady_sent / steady_elapsed:,.0f} events/s ({len(latencies):,} of "
            f"{steady_sent:,} received, {not_sent} not sent: people new to the hub, without "
            f"consent; {steady_failures} failed requests; goal p99 < 5 s)"
        )

        settings.CDPHUB_MIN_AUDIENCE_SIZE = 100
        receiver.items = 0
        sync = audience_sync(receiver, audience)
        print(
            f"  audience:  a segment of {sync['size']:,} members refreshed in "
            f"{sync['refresh_seconds']:.1f} s (its first refresh, memberships empty)"
        )
        print(
            f"  audience:  initial load of {sync['size']:,} members: {sync['load_queued']:,} "
            f"queued and sent in {sync['load_seconds']:.1f} s; a 1% change "
            f"({sync['change']:,} members in or out): {sync['changed_queued']:,} queued and "
            f"sent in {sync['change_seconds']:.1f} s (only the changes)"
        )
    finally:
        receiver.close()
        for key, value in saved.items():
            setattr(settings, key, value)
        use_database(original)
        connection.close()
