"""The event table partitioned by time, the windowed de-duplication, partition retention and
the conversion of a plain event table (profiles.eventstore), on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cdphub.sql import query
from consent import registry
from consent.registry import Subject
from profiles import eventstore
from profiles.eventstore import (
    DEFAULT_PARTITION,
    event_partitions,
    event_partitions_ensure,
    event_partitions_maintain,
    event_table_partitioned,
    events_purge_before,
    events_unpartition,
    interval_end,
    interval_start,
    partition_detach,
    seen_messages_expire,
)
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Event, SeenMessage
from profiles.segments.rules import rule_queryset
from tests.factories import EventFactory, ProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture(autouse=True)
def forget_known_partitions(monkeypatch):
    # What a process knows of the partitions outlives a test's rolled-back transaction.
    monkeypatch.setattr(eventstore, "_covered", eventstore._Covered())


def partition_of(event: Event) -> str:
    ((name,),) = query(
        "SELECT tableoid::regclass::text FROM profiles_event WHERE id = %b", [event.pk]
    )
    return name


def collect(source, *messages: dict):
    result = messages_collect(source_id=source.pk, messages=list(messages))
    pending_process()
    return result


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- The layout ------------------------------------------------------------------------------


def test_a_new_installation_has_partitions_from_this_interval_on_and_a_default_one():
    assert event_table_partitioned()
    partitions = event_partitions()
    now = timezone.now()
    assert any(partition.covers(now) for partition in partitions)
    assert partitions[-1].end > interval_end(interval_start(now))  # made ahead
    assert query("SELECT to_regclass(%b::text) IS NOT NULL", [DEFAULT_PARTITION]) == [(True,)]


def test_processing_makes_the_partition_a_batch_needs():
    source = SourceFactory()
    moment = timezone.now() - dt.timedelta(days=400)
    assert not any(partition.covers(moment) for partition in event_partitions())

    collect(source, {"type": "track", "userId": "u-1", "event": "Old", "timestamp": iso(moment)})

    event = Event.objects.get(name="Old")
    assert partition_of(event) == f"profiles_event_p{interval_start(moment):%Y%m%d}"


@pytest.mark.parametrize(
    "moment", ["1970-01-01T00:00:00Z", "2003-06-01T12:00:00Z", "2999-12-31T23:59:59Z"]
)
def test_a_far_past_or_far_future_timestamp_never_fails_a_batch(moment):
    # Collection stores times before 2000 or more than a day ahead as the time received; what
    # is staged is processed whatever its time.
    source = SourceFactory()
    before = len(event_partitions())
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "userId": "u-1", "event": "Now", "messageId": "now"}],
    )
    query(
        "INSERT INTO profiles_pendingmessage (source_id, message_id, type, payload, timestamp, "
        "received_at) VALUES (%b, 'odd', 'track', %b::jsonb, %b::timestamptz, now())",
        [source.pk, '{"type": "track", "userId": "u-1", "event": "Odd clock"}', moment],
        fetch=False,
    )

    pending_process()

    odd = Event.objects.get(name="Odd clock")
    assert odd.timestamp == dt.datetime.fromisoformat(moment)
    assert partition_of(odd) == DEFAULT_PARTITION
    assert Event.objects.filter(name="Now").exists()
    assert len(event_partitions()) == before  # no partition for a broken clock


def test_a_partition_made_later_takes_its_rows_from_the_default_partition():
    moment = timezone.now() - dt.timedelta(days=500)
    event = EventFactory(timestamp=moment)  # the ORM writes where no partition is made
    assert partition_of(event) == DEFAULT_PARTITION

    made = event_partitions_maintain()

    assert f"profiles_event_p{interval_start(moment):%Y%m%d}" in made
    assert partition_of(event) != DEFAULT_PARTITION
    assert Event.objects.filter(pk=event.pk).exists()


def test_maintenance_makes_partitions_ahead_and_is_idempotent():
    later = timezone.now() + dt.timedelta(days=120)

    event_partitions_maintain(now=later)
    again = event_partitions_maintain(now=later)

    assert again == []
    assert any(partition.covers(later) for partition in event_partitions())


def test_partitions_made_with_another_interval_are_respected(settings):
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    event_partitions_ensure(start, start + dt.timedelta(days=1))  # monthly: all of March
    settings.CDPHUB_EVENT_PARTITION_INTERVAL = "day"

    made = event_partitions_ensure(
        dt.datetime(2026, 3, 31, tzinfo=UTC), start.replace(month=4, day=2)
    )

    assert made == ["profiles_event_p20260401"]  # March stays one partition


# --- De-duplication --------------------------------------------------------------------------


def test_a_message_sent_again_across_a_partition_boundary_is_stored_once():
    source = SourceFactory()
    january = {"type": "track", "userId": "u-1", "event": "Paid", "messageId": "m-42"}
    collect(source, {**january, "timestamp": "2026-01-31T23:59:59Z"})
    # The retry carries another timestamp (its clock was corrected), in the next partition.
    result = collect(source, {**january, "timestamp": "2026-02-01T00:00:01Z"})

    assert result.duplicates == 1
    event = Event.objects.get(message_id="m-42")
    assert event.timestamp.month == 1
    assert SeenMessage.objects.filter(source=source, message_id="m-42").count() == 1


def test_a_copy_staged_before_its_original_was_processed_is_not_stored_twice():
    source = SourceFactory()
    message = {"type": "track", "userId": "u-1", "event": "Paid", "messageId": "m-7"}
    messages_collect(source_id=source.pk, messages=[{**message, "timestamp": "2026-01-31T23:59Z"}])
    pending_process()
    # Staged directly, as if the check at collection time had raced with processing.
    query(
        "INSERT INTO profiles_pendingmessage (source_id, message_id, type, payload, timestamp, "
        'received_at) SELECT source_id, message_id, type, \'{"type": "track"}\'::jsonb, '
        "'2026-02-01T00:00Z', now() FROM profiles_event WHERE message_id = 'm-7'",
        fetch=False,
    )
    pending_process()

    assert Event.objects.filter(message_id="m-7").count() == 1


def test_another_source_may_use_the_same_message_id():
    first, second = SourceFactory(), SourceFactory()
    message = {"type": "track", "userId": "u-1", "event": "Paid", "messageId": "shared"}
    collect(first, message)
    collect(second, message)

    assert Event.objects.filter(message_id="shared").count() == 2


def test_message_ids_are_forgotten_after_the_window(settings):
    settings.CDPHUB_EVENT_DEDUP_DAYS = 30
    source = SourceFactory()
    message = {"type": "track", "userId": "u-1", "event": "Paid", "messageId": "m-old"}
    collect(source, message)

    assert seen_messages_expire(now=timezone.now() + dt.timedelta(days=29)) == 0
    assert collect(source, message).duplicates == 1
    assert seen_messages_expire(now=timezone.now() + dt.timedelta(days=31)) == 1

    collect(source, message)  # outside the window: a new message

    assert Event.objects.filter(message_id="m-old").count() == 2


# --- Retention and erasure ------------------------------------------------------------------


def test_retention_drops_whole_partitions_and_keeps_the_one_holding_the_cutoff():
    old = dt.datetime(2025, 1, 15, tzinfo=UTC)
    straddling = dt.datetime(2025, 3, 20, tzinfo=UTC)
    event_partitions_ensure(old, dt.datetime(2025, 4, 1, tzinfo=UTC))
    gone = EventFactory.create_batch(3, timestamp=old)
    kept = EventFactory(timestamp=straddling)
    stray = EventFactory(timestamp=dt.datetime(1999, 1, 1, tzinfo=UTC))  # default partition
    cutoff = dt.datetime(2025, 3, 25, tzinfo=UTC)

    removed = events_purge_before(cutoff, batch_size=2)

    names = {partition.name for partition in event_partitions()}
    assert "profiles_event_p20250101" not in names
    assert "profiles_event_p20250201" not in names
    assert "profiles_event_p20250301" in names  # the cutoff falls inside it
    assert not Event.objects.filter(pk__in=[e.pk for e in gone]).exists()
    assert not Event.objects.filter(pk=stray.pk).exists()
    assert Event.objects.filter(pk=kept.pk).exists()
    assert removed == 4
    assert tables_like("profiles_event_p2025") == ["profiles_event_p20250301"]  # files gone


def tables_like(prefix: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relname LIKE %s "
            "ORDER BY relname",
            [prefix + "%"],
        )
        return [name for (name,) in cursor.fetchall()]


def test_a_partition_is_detached_first_and_dropped_after_even_if_a_run_stops_between():
    """Retention locks the event table only to detach a partition; its files go after, by a
    drop that locks nothing else. A partition detached by a run that stopped before dropping
    it is dropped by the next run."""
    old = dt.datetime(2025, 1, 15, tzinfo=UTC)
    event_partitions_ensure(old, dt.datetime(2025, 2, 1, tzinfo=UTC))
    gone = EventFactory(timestamp=old)

    assert partition_detach("profiles_event_p20250101") == 1  # and the run stops here

    assert not Event.objects.filter(pk=gone.pk).exists()
    assert "profiles_event_p20250101" not in {p.name for p in event_partitions()}
    assert tables_like("profiles_event_p20250101") == ["profiles_event_p20250101_retired"]
    events_purge_before(dt.datetime(2024, 1, 1, tzinfo=UTC), batch_size=10)
    assert tables_like("profiles_event_p20250101") == []


def test_retention_deletes_rows_of_a_plain_event_table():
    events_unpartition()
    EventFactory(timestamp=dt.datetime(2025, 1, 15, tzinfo=UTC))
    kept = EventFactory(timestamp=dt.datetime(2025, 3, 20, tzinfo=UTC))

    assert events_purge_before(dt.datetime(2025, 3, 1, tzinfo=UTC), batch_size=10) == 1
    assert list(Event.objects.values_list("pk", flat=True)) == [kept.pk]


def test_erasure_deletes_a_persons_events_in_every_partition():
    event_partitions_ensure(dt.datetime(2025, 1, 1, tzinfo=UTC), timezone.now())
    person, other = ProfileFactory(), ProfileFactory()
    moments = [
        dt.datetime(2025, 1, 5, tzinfo=UTC),
        dt.datetime(2025, 6, 5, tzinfo=UTC),
        timezone.now(),
        dt.datetime(1990, 1, 1, tzinfo=UTC),  # default partition
    ]
    for moment in moments:
        EventFactory(profile=person, timestamp=moment)
        EventFactory(profile=other, timestamp=moment)
    assert len({partition_of(e) for e in Event.objects.filter(profile=person)}) == 4

    events = next(holder for holder in registry.holders() if holder.model is Event)
    subject = Subject(profile_ids=frozenset([person.pk]))
    events.erase(events.find(subject), subject)

    assert not Event.objects.filter(profile=person).exists()
    assert Event.objects.filter(profile=other).count() == 4


# --- Partition pruning -----------------------------------------------------------------------


def test_a_seven_day_segment_reads_only_the_recent_partitions():
    now = timezone.now()
    event_partitions_ensure(now - dt.timedelta(days=365), now)
    rule = {"event": "Order Completed", "within_days": 7}

    plan = rule_queryset(rule).explain()

    scanned = {name for name in _partition_names() if name in plan}
    recent = {
        partition.name
        for partition in event_partitions()
        # Later ones too: "the last 7 days" has no upper bound (a clock slightly ahead).
        if partition.end > now - dt.timedelta(days=7)
    }
    assert scanned == recent
    assert DEFAULT_PARTITION in plan  # far-off timestamps may be anywhere


def _partition_names() -> list[str]:
    return [partition.name for partition in event_partitions()]


# --- Converting a plain event table ---------------------------------------------------------


def test_conversion_copies_every_event_and_mirrors_writes_made_meanwhile():
    events_unpartition()
    assert not event_table_partitioned()
    source = SourceFactory()
    events = [
        EventFactory(source=source, timestamp=timezone.now() - dt.timedelta(days=d))
        for d in (0, 40, 80, 120, 3000)
    ]
    first, second, *_, last = events
    made_meanwhile = []

    def meanwhile(copied, total):
        # Writes while the copy is under way: they reach the copy through the triggers.
        if made_meanwhile:
            return
        made_meanwhile.append(EventFactory(source=source, name="During"))
        Event.objects.filter(pk=first.pk).update(name="Renamed")  # copied already
        Event.objects.filter(pk=last.pk).update(name="Renamed late")  # not copied yet
        Event.objects.filter(pk=second.pk).delete()

    copied = eventstore.events_partition(batch_size=2, progress=meanwhile)

    assert event_table_partitioned()
    assert copied >= 4
    names = dict(Event.objects.values_list("pk", "name"))
    assert names[first.pk] == "Renamed"
    assert names[last.pk] == "Renamed late"
    assert second.pk not in names
    assert made_meanwhile[0].pk in names
    assert len(names) == 5
    newest = EventFactory(source=source)
    assert newest.pk > max(names)  # the id sequence goes on
    assert partition_of(newest) != DEFAULT_PARTITION


def test_the_command_converts_and_says_so(capsys):
    events_unpartition()
    EventFactory.create_batch(3)

    call_command("partition_events", batch_size=2)
    call_command("partition_events")

    out = capsys.readouterr().out
    assert "copied 3 events" in out
    assert "partitioned already" in out
    assert Event.objects.count() == 3


def test_an_interrupted_conversion_goes_on_when_run_again():
    events_unpartition()
    EventFactory.create_batch(5)

    def stop(copied, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eventstore.events_partition(batch_size=2, progress=stop)
    assert not event_table_partitioned()

    eventstore.events_partition(batch_size=2)

    assert event_table_partitioned()
    assert Event.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_conversion_loses_nothing_written_by_another_process_meanwhile():
    events_unpartition()
    try:
        source = SourceFactory()
        profile = ProfileFactory()
        EventFactory.create_batch(600, source=source, profile=profile)
        expected = dict(Event.objects.values_list("pk", "name"))
        done = threading.Event()
        during: list[int] = []
        writer = threading.Thread(
            target=_write_meanwhile, args=(source, profile, expected, done, during)
        )
        writer.start()
        try:
            eventstore.events_partition(batch_size=50)
        finally:
            done.set()
            writer.join()

        assert event_table_partitioned()
        assert dict(Event.objects.values_list("pk", "name")) == expected
        assert during  # the writer wrote while the events were copied
    finally:
        eventstore.events_partition()


def _write_meanwhile(source, profile, expected: dict, done: threading.Event, during) -> None:
    """Collection and merges as they go on during a conversion, each write committed."""
    try:
        step = 0
        while not done.is_set() or step < 30:
            step += 1
            if not done.is_set():
                during.append(step)
            event = Event.objects.create(
                profile=profile,
                source=source,
                type="track",
                name=f"new-{step}",
                message_id=f"w-{step}",
                timestamp=timezone.now(),
                received_at=timezone.now(),
            )
            expected[event.pk] = event.name
            oldest = min(pk for pk in expected)
            if step % 3 == 0 and Event.objects.filter(pk=oldest).delete()[0]:
                del expected[oldest]
            some = sorted(expected)[step % len(expected)]
            if Event.objects.filter(pk=some).update(name=f"updated-{step}"):
                expected[some] = f"updated-{step}"
    finally:
        connection.close()


def test_the_admin_finds_an_event_by_its_message_id_in_the_partition_of_its_time(admin_client):
    source = SourceFactory()
    collect(
        source,
        {"type": "track", "userId": "u-1", "event": "Paid", "messageId": "find-me"},
        {"type": "track", "userId": "u-1", "event": "Other", "messageId": "not-me"},
    )
    url = reverse("admin:profiles_event_changelist")

    found = admin_client.get(url, {"q": "find-me"})
    by_name = admin_client.get(url, {"q": "Other"})
    nothing = admin_client.get(url, {"q": "unknown"})

    assert [e.name for e in found.context["cl"].result_list] == ["Paid"]
    assert [e.name for e in by_name.context["cl"].result_list] == ["Other"]
    assert list(nothing.context["cl"].result_list) == []


def test_processing_on_a_plain_event_table_stores_events_and_looks_for_partitions_rarely(
    monkeypatch,
):
    events_unpartition()
    source = SourceFactory()
    old = iso(timezone.now() - dt.timedelta(days=100))
    collect(source, {"type": "track", "userId": "u-1", "event": "First", "timestamp": old})
    looked = []
    monkeypatch.setattr(eventstore, "event_partitions", lambda *a: looked.append(a) or [])

    collect(source, {"type": "track", "userId": "u-1", "event": "Then", "timestamp": old})

    assert set(Event.objects.values_list("name", flat=True)) == {"First", "Then"}
    assert not event_table_partitioned()
    assert looked == []  # it found the table plain the first time: not again for a while


def test_every_partition_has_the_event_tables_indexes_after_a_conversion():
    events_unpartition()
    EventFactory(timestamp=timezone.now() - dt.timedelta(days=45))
    eventstore.events_partition()
    event_partitions_ensure(timezone.now() - dt.timedelta(days=400), timezone.now())

    for name in [*_partition_names(), DEFAULT_PARTITION]:
        indexes = query(
            "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass(%b::text) AND indisvalid",
            [name],
        )
        assert indexes == [(4,)], name  # the primary key, timeline, name/time, time (BRIN)
