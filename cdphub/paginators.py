"""Admin changelists over big tables without a full ``COUNT(*)``."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to a threshold; past it, uses PostgreSQL's planner estimate.

    The exact count is bounded by a ``LIMIT`` so it never scans more than ``threshold`` rows;
    only when the table is bigger than that does the page show the (clearly approximate)
    estimate from ``EXPLAIN``.
    """

    @cached_property
    def count(self) -> int:
        return fast_count(self.object_list)


def fast_count(queryset) -> int:
    """Exact up to ``CDPHUB_ESTIMATED_COUNT_THRESHOLD`` rows, the planner's estimate beyond."""
    threshold = settings.CDPHUB_ESTIMATED_COUNT_THRESHOLD
    bounded = queryset.order_by()[: threshold + 1].count()
    if bounded <= threshold:
        return bounded
    return max(planner_estimate(queryset), bounded)


def planner_estimate(queryset) -> int:
    sql, params = queryset.order_by().query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)  # noqa: S608 - ORM-built SQL
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        import json

        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
