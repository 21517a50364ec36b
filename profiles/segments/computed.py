"""Computed traits: what a profile's events say about it, kept in ``Profile.computed_traits``.

One set-based statement computes everything for a set of profiles (an aggregate over their
events joined back in one ``UPDATE ... FROM``), used by both entry points so that they cannot
disagree:

- ``computed_traits_update(profile_ids=...)``: incremental, called after events are processed;
- ``computed_traits_recompute_all()``: every profile in id-range batches (nightly, and
  ``manage.py recompute_traits``). It first takes the RFM quintile bounds (NTILE over all
  customers) so the incremental updates of the day score against the same bounds.

Keys written: lifetime_value, order_count, average_order_value, first_order_at, last_order_at,
first_seen_at, last_seen_at, event_counts ({name: {"7d", "30d", "90d"}}), rfm_recency,
rfm_frequency, rfm_monetary (1-5, 5 best), rfm_score ("555"), churn_risk (low/medium/high, for
customers). Keys without a value (no orders) are left out. The traits marketers define
(``defined_traits``) are kept in the same document, and computed by the same two entry points.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from cdphub.sql import execute_without_jit, query
from profiles.models import BUILT_IN_COMPUTED_KEYS, ComputedTraitQuantiles, Event, Profile
from profiles.segments.defined_traits import defined_traits_recompute, defined_traits_update

COMPUTED_KEYS = BUILT_IN_COMPUTED_KEYS
RFM_METRICS = ("recency", "frequency", "monetary")
WINDOWS = (7, 30, 90)
# A one-time buyer is expected back within this many days (churn risk).
DEFAULT_ORDER_GAP_DAYS = 90

PROFILE = Profile._meta.db_table
EVENT = Event._meta.db_table
# A row of per_name counting as orders (the order event's name is a parameter).
ORDERS = "type = 'track' AND name = %b"


def revenue_sql() -> tuple[str, list[str]]:
    """The order's revenue: the first configured property holding a number."""
    properties = settings.CDPHUB_REVENUE_PROPERTIES or ["revenue"]
    parts = ", ".join("cdphub_jsonb_numeric(e.properties -> %b)" for _ in properties)
    return f"COALESCE({parts}, 0)", list(properties)


def score_sql(value: str, bounds: list) -> tuple[str, list]:
    """1 + the number of quintile bounds below ``value``; NULL without bounds or value."""
    if not bounds:
        return "NULL::int", []
    steps = " + ".join(f"({value} > %b::numeric)::int" for _ in bounds)
    return f"CASE WHEN {value} IS NULL THEN NULL ELSE 1 + {steps} END", [str(b) for b in bounds]


def quantile_bounds() -> dict[str, list]:
    rows = ComputedTraitQuantiles.objects.filter(metric__in=RFM_METRICS)
    return {row.metric: row.bounds for row in rows}


def computed_sql(scope_sql: str, scope_params: list, now: datetime) -> tuple[str, list]:
    """The UPDATE for the active profiles whose id meets ``scope_sql`` (a condition on
    ``{id}``, applied to the profiles and, again, to the events: joined only through the
    scope, a batch's events were found by hashing the whole event table)."""
    revenue, revenue_params = revenue_sql()
    bounds = quantile_bounds()
    recency, recency_params = score_sql(
        "extract(epoch FROM a.last_order_at)", bounds.get("recency", [])
    )
    frequency, frequency_params = score_sql("a.order_count", bounds.get("frequency", []))
    monetary, monetary_params = score_sql("a.revenue", bounds.get("monetary", []))
    order = settings.CDPHUB_ORDER_EVENT
    window_columns = ", ".join(
        f"count(*) FILTER (WHERE e.timestamp >= %b::timestamptz - interval '{n} days'"
        f" AND e.timestamp <= %b) AS c{n}"
        for n in WINDOWS
    )
    window_object = ", ".join(f"'{days}d', c{days}" for days in WINDOWS)
    sql = f"""
        WITH scope AS MATERIALIZED (
            -- Locked in id order first, as event processing locks them: the UPDATE alone
            -- would lock them in join order and could deadlock with a processing batch.
            SELECT p.id FROM {PROFILE} p
            WHERE p.merged_into_id IS NULL AND {scope_sql.format(id="p.id")}
            ORDER BY p.id FOR NO KEY UPDATE
        ),
        -- One pass over the profiles' events, per type and name; everything else is derived
        -- from these rows (a second pass would read every event again). Orders and the event
        -- counts are track events only: a page named like the order event is no order, and a
        -- group call's name is an account's id.
        per_name AS (
            SELECT e.profile_id, e.type, e.name,
                   min(e.timestamp) AS first_at,
                   max(e.timestamp) AS last_at,
                   count(*) AS n,
                   sum({revenue}) FILTER (WHERE e.type = 'track' AND e.name = %b) AS revenue,
                   {window_columns}
            FROM {EVENT} e JOIN scope s ON s.id = e.profile_id
            WHERE {scope_sql.format(id="e.profile_id")}
            GROUP BY e.profile_id, e.type, e.name
        ),
        agg AS (
            SELECT profile_id,
                   min(first_at) AS first_seen_at,
                   max(last_at) AS last_seen_at,
                   COALESCE(sum(n) FILTER (WHERE {ORDERS}), 0)::bigint AS order_count,
                   sum(revenue) AS revenue,
                   min(first_at) FILTER (WHERE {ORDERS}) AS first_order_at,
                   max(last_at) FILTER (WHERE {ORDERS}) AS last_order_at,
                   jsonb_object_agg(name, jsonb_build_object({window_object}))
                       FILTER (WHERE type = 'track' AND name <> '' AND c{max(WINDOWS)} > 0)
                       AS event_counts
            FROM per_name
            GROUP BY profile_id
        ),
        scored AS (
            SELECT s.id, a.*,
                   {recency} AS r, {frequency} AS f, {monetary} AS m,
                   %b::timestamptz - a.last_order_at AS since_last_order,
                   CASE WHEN a.order_count > 1
                        THEN (a.last_order_at - a.first_order_at) / (a.order_count - 1)
                        ELSE interval '{DEFAULT_ORDER_GAP_DAYS} days' END AS expected_gap
            FROM scope s
            LEFT JOIN agg a ON a.profile_id = s.id
        ),
        computed AS (
            SELECT id, jsonb_strip_nulls(jsonb_build_object(
                'lifetime_value', round(COALESCE(revenue, 0), 2),
                'order_count', COALESCE(order_count, 0),
                'average_order_value',
                    CASE WHEN order_count > 0 THEN round(revenue / order_count, 2) END,
                'first_order_at', first_order_at,
                'last_order_at', last_order_at,
                'first_seen_at', first_seen_at,
                'last_seen_at', last_seen_at,
                'event_counts', COALESCE(event_counts, '{{}}'::jsonb),
                'rfm_recency', CASE WHEN order_count > 0 THEN r END,
                'rfm_frequency', CASE WHEN order_count > 0 THEN f END,
                'rfm_monetary', CASE WHEN order_count > 0 THEN m END,
                'rfm_score', CASE WHEN order_count > 0 THEN r::text || f::text || m::text END,
                'churn_risk', CASE
                    WHEN NOT order_count > 0 THEN NULL
                    WHEN since_last_order > 2 * expected_gap THEN 'high'
                    WHEN since_last_order > expected_gap THEN 'medium'
                    ELSE 'low' END
            )) AS doc
            FROM scored
        )
        UPDATE {PROFILE} p
        SET computed_traits = (p.computed_traits - %b::text[]) || c.doc
        FROM computed c
        WHERE p.id = c.id
          AND p.computed_traits IS DISTINCT FROM (p.computed_traits - %b::text[]) || c.doc
    """  # noqa: S608 - table names and window lengths are ours; values are parameters
    params = [
        *scope_params,
        *revenue_params,
        order,
        *([now] * 2 * len(WINDOWS)),
        *scope_params,  # the events' condition
        order,
        order,
        order,
        *recency_params,
        *frequency_params,
        *monetary_params,
        now,
        list(COMPUTED_KEYS),
        list(COMPUTED_KEYS),
    ]
    return sql, params


def computed_traits_update(*, profile_ids: Iterable[int], now: datetime | None = None) -> int:
    """Recompute the computed traits of these profiles, built-in and defined (call after their
    events were processed). Returns the number of profiles whose built-in traits changed."""
    ids = sorted({int(pk) for pk in profile_ids})
    if not ids:
        return 0
    now = now or timezone.now()
    sql, params = computed_sql("{id} = ANY(%b::bigint[])", [ids], now)
    changed = execute_without_jit(sql, params)
    defined_traits_update(profile_ids=ids, now=now)
    return changed


def computed_traits_recompute_all(
    *, batch_size: int | None = None, now: datetime | None = None
) -> int:
    """Take new RFM bounds, then recompute every active profile in id-range batches (each its
    own transaction, so a long run never holds locks on all profiles), then the defined
    traits the same way."""
    now = now or timezone.now()
    batch_size = batch_size or settings.CDPHUB_COMPUTED_TRAITS_BATCH
    rfm_bounds_refresh(now=now)
    span = Profile.objects.aggregate(low=Min("id"), high=Max("id"))
    if span["low"] is None:
        return 0
    changed = 0
    for start in range(span["low"], span["high"] + 1, batch_size):
        sql, params = computed_sql("{id} >= %b AND {id} < %b", [start, start + batch_size], now)
        changed += execute_without_jit(sql, params)
    defined_traits_recompute(now=now, batch_size=batch_size)
    return changed


@transaction.atomic
def rfm_bounds_refresh(*, now: datetime | None = None) -> dict[str, list]:
    """The upper bounds of NTILE(5) buckets 1-4 of recency (last order time), frequency (order
    count) and monetary value (revenue) over every active customer."""
    revenue, revenue_params = revenue_sql()
    sql = f"""
        WITH customers AS (
            SELECT e.profile_id,
                   extract(epoch FROM max(e.timestamp)) AS recency,
                   count(*)::numeric AS frequency,
                   sum({revenue}) AS monetary
            FROM {EVENT} e JOIN {PROFILE} p ON p.id = e.profile_id AND p.merged_into_id IS NULL
            WHERE e.type = 'track' AND e.name = %b
            GROUP BY e.profile_id
        ),
        tiles AS (
            SELECT recency, frequency, monetary,
                   ntile(5) OVER (ORDER BY recency) AS r,
                   ntile(5) OVER (ORDER BY frequency) AS f,
                   ntile(5) OVER (ORDER BY monetary) AS m
            FROM customers
        )
        SELECT array(SELECT max(recency) FROM tiles GROUP BY r HAVING r < 5 ORDER BY r),
               array(SELECT max(frequency) FROM tiles GROUP BY f HAVING f < 5 ORDER BY f),
               array(SELECT max(monetary) FROM tiles GROUP BY m HAVING m < 5 ORDER BY m)
    """  # noqa: S608 - table names are ours; values are parameters
    (row,) = query(sql, [*revenue_params, settings.CDPHUB_ORDER_EVENT])
    bounds = {
        metric: [str(value) for value in values]  # exact decimals, compared as numeric
        for metric, values in zip(RFM_METRICS, row, strict=True)
    }
    for metric, values in bounds.items():
        ComputedTraitQuantiles.objects.update_or_create(
            metric=metric, defaults={"bounds": values, "computed_at": now or timezone.now()}
        )
    return bounds
