from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.ingest.refresh import profiles_refresh_queue, queued_profiles_refresh
from profiles.models import Identity, ProfileRefresh, SegmentMembership
from profiles.segments import membership
from profiles.segments.membership import segment_refresh
from tests.factories import EventFactory, ProfileFactory, SegmentFactory, SourceFactory

pytestmark = pytest.mark.django_db

BUYERS = {"computed": "order_count", "op": "gte", "value": 2}


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


def order(message_id: str, minutes: int) -> dict:
    moment = timezone.now() - timedelta(hours=1) + timedelta(minutes=minutes)
    return {
        "type": "track",
        "userId": "u-1",
        "event": "Order Completed",
        "properties": {"revenue": 40},
        "messageId": message_id,
        "timestamp": moment.isoformat(),
    }


def test_processing_refreshes_the_touched_profiles_once_it_is_done():
    # Given a segment of repeat buyers and two orders of one person waiting in staging
    buyers = SegmentFactory(rule=BUYERS)
    segment_refresh(segment=buyers)
    source = SourceFactory()
    messages_collect(source_id=source.pk, messages=[order("o-1", 1), order("o-2", 2)])

    # When processing runs in two batches of one message
    pending_process(batch_size=1)

    # Then the person's computed traits and segment membership include both orders
    profile = Identity.objects.get(kind="user_id", value="u-1").profile
    assert profile.computed_traits["order_count"] == 2
    assert profile.computed_traits["lifetime_value"] == 80
    assert SegmentMembership.objects.filter(segment=buyers, profile=profile).exists()
    assert not ProfileRefresh.objects.exists()


def test_a_profile_queued_again_during_its_refresh_is_refreshed_again(monkeypatch):
    # Given a profile queued after one order, and a second order that is processed (and the
    # profile queued again) while the refresh of the first is running
    profile = ProfileFactory()
    EventFactory(profile=profile, name="Order Completed", properties={"revenue": 10})
    profiles_refresh_queue(profile_ids=[profile.pk])
    original = membership.profile_activity_refresh
    calls = []

    def refresh_while_events_arrive(*, profile_ids):
        result = original(profile_ids=profile_ids)
        calls.append(list(profile_ids))
        if len(calls) == 1:
            with transaction.atomic():
                EventFactory(profile=profile, name="Order Completed", properties={"revenue": 5})
                profiles_refresh_queue(profile_ids=[profile.pk])
        return result

    monkeypatch.setattr(membership, "profile_activity_refresh", refresh_while_events_arrive)

    # When the queue is refreshed
    refreshed = queued_profiles_refresh()

    # Then the profile was refreshed twice and its traits count the second order too
    assert calls == [[profile.pk], [profile.pk]]
    assert refreshed == 2
    profile.refresh_from_db()
    assert profile.computed_traits["order_count"] == 2
    assert not ProfileRefresh.objects.exists()


def test_a_claim_left_by_a_crashed_worker_is_taken_again_once_stale():
    crashed, busy = ProfileFactory(), ProfileFactory()
    for profile in (crashed, busy):
        EventFactory(profile=profile, name="Order Completed", properties={"revenue": 10})
    now = timezone.now()
    ProfileRefresh.objects.create(profile_id=crashed.pk, claimed_at=now - timedelta(minutes=11))
    ProfileRefresh.objects.create(profile_id=busy.pk, claimed_at=now - timedelta(minutes=1))

    assert queued_profiles_refresh() == 1

    crashed.refresh_from_db()
    busy.refresh_from_db()
    assert crashed.computed_traits["order_count"] == 1
    assert "order_count" not in busy.computed_traits  # another worker is on it
    assert list(ProfileRefresh.objects.values_list("profile_id", flat=True)) == [busy.pk]


def test_a_rolled_back_batch_queues_nothing():
    profile = ProfileFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        profiles_refresh_queue(profile_ids=[profile.pk])
        raise RuntimeError("the batch failed")
    assert not ProfileRefresh.objects.exists()


def test_a_refresh_that_deadlocks_gives_its_claim_back_and_tries_again(monkeypatch):
    profile = ProfileFactory()
    EventFactory(profile=profile, name="Order Completed", properties={"revenue": 10})
    profiles_refresh_queue(profile_ids=[profile.pk])
    original = membership.profile_activity_refresh
    attempts = []

    def deadlock_once(*, profile_ids):
        attempts.append(list(profile_ids))
        if len(attempts) == 1:
            raise OperationalError("deadlock detected")
        return original(profile_ids=profile_ids)

    monkeypatch.setattr(membership, "profile_activity_refresh", deadlock_once)

    assert queued_profiles_refresh() == 1
    assert attempts == [[profile.pk], [profile.pk]]
    profile.refresh_from_db()
    assert profile.computed_traits["order_count"] == 1
    assert not ProfileRefresh.objects.exists()


def test_other_database_errors_of_a_refresh_are_raised(monkeypatch):
    profile = ProfileFactory()
    profiles_refresh_queue(profile_ids=[profile.pk])

    def broken(*, profile_ids):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(membership, "profile_activity_refresh", broken)
    with pytest.raises(OperationalError):
        queued_profiles_refresh()
    # the claim stays: taken again once stale, by this or another worker
    assert ProfileRefresh.objects.get().claimed_at is not None
