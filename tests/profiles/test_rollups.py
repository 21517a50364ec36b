from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.models import EventCountDay, EventDailyCount
from profiles.rollups import event_daily_counts_refresh, event_daily_counts_refresh_if_stale
from tests.factories import EventFactory, SourceFactory

pytestmark = pytest.mark.django_db


def counts() -> dict:
    return {
        (row.day, row.source.name, row.name): row.count
        for row in EventDailyCount.objects.select_related("source")
    }


def test_counts_per_day_source_and_name():
    now = timezone.now()
    web, app = SourceFactory(name="Web"), SourceFactory(name="App")
    EventFactory.create_batch(3, source=web, name="Order Completed", timestamp=now)
    EventFactory(source=app, name="Order Completed", timestamp=now)
    EventFactory(source=web, name="Page Viewed", timestamp=now - timedelta(days=3))
    EventFactory(source=web, name="Too Old", timestamp=now - timedelta(days=45))

    event_daily_counts_refresh(now=now)

    today, three_days_ago = timezone.localdate(now), timezone.localdate(now - timedelta(days=3))
    assert counts() == {
        (today, "Web", "Order Completed"): 3,
        (today, "App", "Order Completed"): 1,
        (three_days_ago, "Web", "Page Viewed"): 1,
    }
    assert EventCountDay.objects.count() == 30


def test_recent_days_are_recomputed_older_days_only_once():
    now = timezone.now()
    source = SourceFactory(name="Web")
    EventFactory(source=source, name="A", timestamp=now)
    EventFactory(source=source, name="B", timestamp=now - timedelta(days=5))
    first = event_daily_counts_refresh(now=now)

    # events arriving later, for today and (late) for five days ago
    EventFactory(source=source, name="A", timestamp=now)
    EventFactory(source=source, name="B", timestamp=now - timedelta(days=5))
    second = event_daily_counts_refresh(now=now)

    assert len(first) == 30 and len(second) == 2
    assert counts()[(timezone.localdate(now), "Web", "A")] == 2
    assert counts()[(timezone.localdate(now - timedelta(days=5)), "Web", "B")] == 1
    event_daily_counts_refresh(now=now, recompute_all=True)  # the nightly run catches up
    assert counts()[(timezone.localdate(now - timedelta(days=5)), "Web", "B")] == 2


def test_pages_recompute_only_when_stale():
    now = timezone.now()
    EventFactory(timestamp=now)

    assert event_daily_counts_refresh_if_stale(now=now) is True
    assert event_daily_counts_refresh_if_stale(now=now + timedelta(minutes=1)) is False
    assert event_daily_counts_refresh_if_stale(now=now + timedelta(minutes=6)) is True
