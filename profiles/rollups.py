"""Daily event counts for the dashboard.

The event table grows without bound; the dashboard must not. Counts per day, source, type and
name are computed per day with one ``INSERT ... SELECT`` over that day's events (the BRIN index
on ``timestamp`` keeps it to that day's blocks). Days never computed are filled in, the most
recent days are recomputed as events keep arriving, and older days are final except for the
nightly recompute of the whole window, which picks up late events.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from cdphub.sql import execute
from profiles.models import Event, EventCountDay, EventDailyCount

WINDOW_DAYS = 30
RECENT_DAYS = 2
STALE_AFTER = timedelta(minutes=5)

COUNT_DAYS_SQL = f"""
    INSERT INTO {EventDailyCount._meta.db_table} (day, source_id, type, name, count)
    SELECT timezone(%b::text, timestamp)::date AS day, source_id, type, name, count(*)
    FROM {Event._meta.db_table}
    WHERE timestamp >= %b AND timestamp < %b
      AND timezone(%b::text, timestamp)::date = ANY(%b::date[])
    GROUP BY 1, source_id, type, name
"""  # noqa: S608 - table names from model metadata; values are parameters


def event_daily_counts_refresh(
    *, days: int = WINDOW_DAYS, recompute_all: bool = False, now: datetime | None = None
) -> list[date]:
    """Compute the days of the window that are missing or recent (or all of them); returns the
    days computed."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    window = [today - timedelta(days=offset) for offset in range(days)]
    computed = set(EventCountDay.objects.filter(day__gte=window[-1]).values_list("day", flat=True))
    recent = set(window[:RECENT_DAYS])
    todo = [day for day in window if recompute_all or day not in computed or day in recent]
    if todo:
        event_days_count(days=todo, now=now)
    return todo


def event_daily_counts_refresh_if_stale(*, now: datetime | None = None) -> bool:
    """For pages: recompute only when the last computation of today is older than a few
    minutes (the scheduled task normally keeps it fresh)."""
    now = now or timezone.now()
    latest = EventCountDay.objects.filter(day=timezone.localdate(now)).first()
    if latest is not None and now - latest.computed_at < STALE_AFTER:
        return False
    event_daily_counts_refresh(now=now)
    return True


@transaction.atomic
def event_days_count(*, days: list[date], now: datetime) -> None:
    """Recount the given days: three statements however many days."""
    start = timezone.make_aware(datetime.combine(min(days), time.min))
    end = timezone.make_aware(datetime.combine(max(days) + timedelta(days=1), time.min))
    EventDailyCount.objects.filter(day__in=days).delete()
    tz = timezone.get_current_timezone_name()
    execute(COUNT_DAYS_SQL, [tz, start, end, tz, days])
    EventCountDay.objects.bulk_create(
        [EventCountDay(day=day, computed_at=now) for day in days],
        update_conflicts=True,
        unique_fields=["day"],
        update_fields=["computed_at"],
    )
