from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import BatchResolver, pending_process
from profiles.models import Event, Identity, PendingMessage, Profile, ProfileMerge
from tests.factories import SourceFactory
from tests.plans import rows_read

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


def run_workers(count: int, batch_size: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def work():
        try:
            start.wait()
            pending_process(batch_size=batch_size)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_workers_create_exactly_one_profile_per_person():
    # Given many messages of two new people, each message with some of their identifiers
    source = SourceFactory()
    messages = []
    for i in range(200):
        person = i % 2
        messages.append(
            {
                "type": "identify" if i % 3 == 0 else "track",
                "event": "Viewed",
                "userId": f"user-{person}",
                "anonymousId": f"anon-{person}-{i % 5}",
                "traits": {"email": f"person{person}@example.com"} if (i // 2) % 4 == 0 else {},
            }
        )
    messages_collect(source_id=source.pk, messages=messages)

    # When six workers process them at the same time, in small batches
    errors = run_workers(count=6, batch_size=3)

    # Then each person has exactly one profile holding all identifiers and events
    assert errors == []
    assert Profile.objects.count() == 2
    assert not ProfileMerge.objects.exists()
    for person in (0, 1):
        profile = Identity.objects.get(kind="user_id", value=f"user-{person}").profile
        assert profile.identities.count() == 1 + 5 + 1
        assert profile.events.count() == 100
    assert not PendingMessage.objects.exists()


def test_crash_mid_batch_leaves_rows_to_reclaim_and_nothing_doubled(monkeypatch):
    source = SourceFactory()
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "userId": f"u-{i}", "event": "E"} for i in range(10)],
    )

    def crash(self):
        raise OperationalError("server closed the connection unexpectedly")

    # The first attempt loses its connection after profiles and identities were written,
    # before the events: a transient error, so nothing is rejected.
    monkeypatch.setattr(BatchResolver, "_write_events", crash)
    with pytest.raises(OperationalError):
        pending_process()
    assert PendingMessage.objects.count() == 10
    assert not Profile.objects.exists()

    monkeypatch.undo()
    assert pending_process() == 10
    assert Event.objects.count() == 10
    assert Profile.objects.count() == 10
    assert pending_process() == 0


def test_a_senders_messages_share_a_lane_and_claims_go_lane_by_lane():
    """Staged messages get the lane of their sender (anonymous id, else user id); a claim takes
    the lowest lanes first, in arrival order within a lane, and the next claim goes on after
    the last position claimed."""
    from profiles.ingest.collect import processing_lane
    from profiles.ingest.processing import START, pending_process_batch
    from profiles.models import PROCESSING_LANES

    source = SourceFactory()
    messages = [
        {"type": "track", "event": "E", "anonymousId": f"anon-{i % 7}", "userId": f"u-{i % 7}"}
        for i in range(70)
    ] + [
        {"type": "track", "event": "E", "userId": "server-side-only"},
        # A placeholder anonymous id names nobody: the user id decides.
        {"type": "track", "event": "E", "userId": "u-real", "anonymousId": "undefined"},
    ]
    messages_collect(source_id=source.pk, messages=messages)

    staged = list(PendingMessage.objects.order_by("id").values_list("payload", "lane"))
    for payload, lane in staged:
        sender = payload.get("anonymousId") or payload["userId"]
        sender = payload["userId"] if sender == "undefined" else sender
        assert lane == processing_lane({"anonymousId": sender}) < PROCESSING_LANES
    lanes = sorted({lane for _, lane in staged})
    assert len(lanes) > 1  # seven senders and one more: not all in one lane

    first_lane = [
        pk for pk, lane in PendingMessage.objects.values_list("id", "lane") if lane == lanes[0]
    ]
    done, last, deferred = pending_process_batch(batch_size=len(first_lane), after=START)

    assert (done, deferred) == (len(first_lane), 0)
    assert last == (lanes[0], max(first_lane))
    assert not PendingMessage.objects.filter(lane=lanes[0]).exists()
    assert PendingMessage.objects.filter(lane__gt=lanes[0]).count() == 72 - len(first_lane)
    done, last, _ = pending_process_batch(batch_size=1000, after=last)
    assert done == 72 - len(first_lane) and not PendingMessage.objects.exists()


def test_two_workers_claim_different_senders():
    """While one worker's batch is open, another's claim takes the next lanes: other senders,
    so none of its messages wait for the first worker's identifier locks."""
    from profiles.ingest.processing import START, pending_process_batch

    source = SourceFactory()
    # Repeat visitors: each sender's messages arrive spread over the whole stream.
    messages = [
        {"type": "track", "event": "E", "anonymousId": f"anon-{i % 40}"} for i in range(400)
    ]
    messages_collect(source_id=source.pk, messages=messages)
    first_batch_open, second_done = threading.Event(), threading.Event()
    results = {}

    def first():
        try:
            from django.db import transaction

            with transaction.atomic():
                results["first"] = pending_process_batch(batch_size=200, after=START)
                first_batch_open.set()
                second_done.wait(timeout=30)
        finally:
            connection.close()

    def second():
        try:
            first_batch_open.wait(timeout=30)
            results["second"] = pending_process_batch(batch_size=200, after=START)
        finally:
            second_done.set()
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results["first"][0] + results["second"][0] == 400
    assert results["first"][2] == results["second"][2] == 0  # nothing left for later
    assert not PendingMessage.objects.exists()


def test_a_queue_analysed_nearly_empty_is_still_read_by_key():
    """The claim and the removal of processed messages are planned once per connection, on
    the statistics of the staging table, which is usually analysed while nearly empty: the
    plans then read the whole queue for every batch (and sorted it, payloads and all)."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE profiles_pendingmessage")
    source = SourceFactory()
    messages = [
        {"type": "track", "event": "Viewed", "userId": f"u{n}", "messageId": f"m{n}"}
        for n in range(300)
    ]
    messages_collect(source_id=source.pk, messages=messages)
    before = rows_read("profiles_pendingmessage")

    assert pending_process(batch_size=20) == 300

    # Claimed, then removed: each message read about twice. The whole queue for each of the
    # 15 batches would be about 4,500 rows.
    assert rows_read("profiles_pendingmessage") - before < 3 * 300
