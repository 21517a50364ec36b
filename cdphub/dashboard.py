"""The numbers on the admin dashboard. Expensive aggregates are cached for a few minutes, and
counts over big tables use estimates, so the page stays fast as tables grow."""

from __future__ import annotations

from datetime import date, timedelta

from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from cdphub.paginators import fast_count

CACHE_SECONDS = 300
# Dashboard figures above this are PostgreSQL's estimates: a cold dashboard never counts rows.
EXACT_UP_TO = 10_000
CACHE_KEY = "cdphub:dashboard:v1"


def dashboard_numbers(*, refresh: bool = False) -> dict:
    if refresh:
        cache.delete(CACHE_KEY)
    numbers = cache.get(CACHE_KEY)
    if numbers is None:
        numbers = compute_numbers()
        cache.set(CACHE_KEY, numbers, CACHE_SECONDS)
    return numbers


def compute_numbers() -> dict:
    return {
        "computed_at": timezone.now(),
        "profiles": profile_numbers(),
        "events_per_day": events_per_day(days=30),
        "top_events": top_events(days=7),
        "segments": segment_sizes(),
        "audiences": audience_sizes(),
        "consent_rates": consent_rates(),
    }


def profile_numbers() -> dict:
    from profiles.models import Identity, Profile

    active = Profile.objects.active()
    total = fast_count(active)
    week_ago = timezone.now() - timedelta(days=7)
    identified = fast_count(
        Identity.objects.filter(kind__in=[Identity.Kind.USER_ID, Identity.Kind.EMAIL])
        .values("profile_id")
        .distinct()
    )
    return {
        "total": total,
        "new_this_week": fast_count(active.filter(created_at__gte=week_ago), threshold=EXACT_UP_TO),
        "identified_share": min(identified / total, 1.0) if total else 0.0,
    }


def events_per_day(*, days: int) -> list[tuple[str, dict[str, int]]]:
    """Events per day and source over the last ``days`` days, oldest first, empty days kept;
    read from the daily rollup, never from the event table."""
    from profiles.models import EventDailyCount
    from profiles.rollups import event_daily_counts_refresh_if_stale

    event_daily_counts_refresh_if_stale()
    today = timezone.localdate()
    start = today - timedelta(days=days - 1)
    rows = (
        EventDailyCount.objects.filter(day__gte=start)
        .values("day", "source__name")
        .annotate(total=Sum("count"))
    )
    by_day: dict[date, dict[str, int]] = {start + timedelta(days=i): {} for i in range(days)}
    for row in rows:
        if row["day"] in by_day:
            by_day[row["day"]][row["source__name"]] = row["total"]
    return [(day.isoformat(), values) for day, values in by_day.items()]


def top_events(*, days: int, limit: int = 8) -> list[dict]:
    from profiles.models import Event, EventDailyCount

    since = timezone.localdate() - timedelta(days=days - 1)
    return list(
        EventDailyCount.objects.filter(day__gte=since, type=Event.Type.TRACK)
        .values("name")
        .annotate(count=Sum("count"))
        .order_by("-count")[:limit]
    )


def segment_sizes(limit: int = 8) -> list[dict]:
    from profiles.models import Segment

    return list(Segment.objects.order_by("-size").values("id", "name", "size")[:limit])


def audience_sizes(limit: int = 8) -> list[dict]:
    from audiences.models import Audience

    return list(Audience.objects.order_by("-size").values("id", "name", "size")[:limit])


def consent_rates() -> list[dict]:
    """Per purpose: profiles granting it now, as a share of all active profiles (counts past
    the estimate threshold are the planner's estimates)."""
    from consent.models import ConsentState, ConsentStatus, Purpose
    from profiles.models import Profile

    total = fast_count(Profile.objects.active()) or 1
    granted = ConsentState.objects.filter(status=ConsentStatus.GRANTED)
    rates = []
    for purpose in Purpose.objects.filter(is_active=True).order_by("name"):
        count = fast_count(granted.filter(purpose=purpose), threshold=EXACT_UP_TO)
        rates.append(
            {
                "code": purpose.code,
                "name": purpose.name,
                "granted": count,
                "rate": min(count / total, 1.0),
            }
        )
    return rates


def open_requests(limit: int = 8) -> dict:
    """Open data subject requests, soonest due first; never cached (deadlines are legal)."""
    from consent.models import DataSubjectRequest

    open_statuses = [
        DataSubjectRequest.Status.RECEIVED,
        DataSubjectRequest.Status.VERIFIED,
        DataSubjectRequest.Status.IN_PROGRESS,
    ]
    requests = DataSubjectRequest.objects.filter(status__in=open_statuses).order_by("due_at")
    return {
        "items": list(requests[:limit]),
        "open": requests.count(),
        "overdue": requests.filter(due_at__lt=timezone.now()).count(),
    }


# --- A sales rep's own work (per user, never cached) ---------------------------------------------

MY_TASKS_SHOWN = 8


def my_pipeline(user) -> list[dict]:
    """The user's open deals per pipeline stage: count, amount and expected amount."""
    from crm.models import Deal
    from crm.selectors import deals_stage_totals

    return deals_stage_totals(Deal.objects.filter(owner=user, status=Deal.Status.OPEN))


def my_tasks(user) -> dict:
    """The user's open tasks due today and overdue: the counts and the soonest few."""
    from crm.models import Task
    from crm.reminders import tasks_due

    mine = Task.objects.filter(owner=user)
    overdue, today = tasks_due(mine, "overdue"), tasks_due(mine, "today")
    items = list((overdue | today).order_by("due_at", "pk")[:MY_TASKS_SHOWN])
    now = timezone.now()
    for task in items:
        task.is_overdue = task.due_at < now
    return {"overdue": overdue.count(), "today": today.count(), "items": items}
