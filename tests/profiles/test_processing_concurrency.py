from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import BatchResolver, pending_process
from profiles.models import Event, Identity, PendingMessage, Profile, ProfileMerge
from tests.factories import SourceFactory

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
