"""Prometheus metrics at ``GET /metrics``, for the operators' monitoring.

Counted where things happen (``prometheus-client`` counters and histograms): requests and their
latency per route, collected messages by outcome (accepted, duplicate, rejected, rate-limited),
messages processed, segment refresh durations, delivery attempts by destination kind and
outcome. Read from the database at each scrape (what a queue holds now, whoever filled it):
the staged backlog and the age of its oldest message, the profile refresh queue, data subject
requests open and overdue.

Under gunicorn or Celery with several processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory (cleared when the server starts): every process writes its counts there and a scrape
adds them up, whichever process answers it (``prometheus_client``'s multiprocess mode).

Protected: the endpoint answers a request carrying ``Authorization: Bearer
<CDPHUB_METRICS_TOKEN>``, or coming from an address in ``CDPHUB_METRICS_NETWORKS``; with
neither setting it does not exist (404). It is answered before the host check, as the probes
are: a scraper comes by address."""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

METRICS_PATH = "/metrics"
# Any other method is counted as "other": a label per invented method would grow without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "cdphub_http_requests_total",
    "HTTP requests answered, by route (the URL pattern), method and status code",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "cdphub_http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES = Counter(
    "cdphub_collected_messages_total",
    "Messages sent to the collection endpoints, by outcome: accepted (staged), duplicate, "
    "rejected (invalid), rate_limited (refused with a 429 or per identifier)",
    ["outcome"],
)
PROCESSED = Counter(
    "cdphub_processed_messages_total", "Staged messages processed (their rate: throughput)"
)
SEGMENT_REFRESH_SECONDS = Histogram(
    "cdphub_segment_refresh_duration_seconds",
    "Time to refresh one segment's memberships, by outcome (ok or failed)",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DELIVERIES = Counter(
    "cdphub_delivery_attempts_total",
    "Attempts to send to destinations, by destination kind and outcome",
    ["kind", "outcome"],
)
DELIVERED_ITEMS = Counter(
    "cdphub_delivery_items_total",
    "Items (events, audience changes) in attempts, by destination kind and outcome",
    ["kind", "outcome"],
)


class DatabaseCollector(Collector):
    """What waits now, read at each scrape with one statement."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from cdphub.sql import query
        from consent.models import DataSubjectRequest
        from profiles.models import PendingMessage, ProfileRefresh

        open_statuses = [
            DataSubjectRequest.Status.RECEIVED,
            DataSubjectRequest.Status.VERIFIED,
            DataSubjectRequest.Status.IN_PROGRESS,
        ]
        ((staged, oldest, refresh, dsars_open, dsars_overdue),) = query(
            f"""
            SELECT (SELECT count(*) FROM {PendingMessage._meta.db_table}),
                   (SELECT min(received_at) FROM {PendingMessage._meta.db_table}),
                   (SELECT count(*) FROM {ProfileRefresh._meta.db_table}),
                   (SELECT count(*) FROM {DataSubjectRequest._meta.db_table}
                    WHERE status = ANY(%b::text[])),
                   (SELECT count(*) FROM {DataSubjectRequest._meta.db_table}
                    WHERE status = ANY(%b::text[]) AND due_at < %b)
            """,  # noqa: S608 - table names from model metadata; values are parameters
            [open_statuses, open_statuses, timezone.now()],
        )
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield gauge("cdphub_staged_messages", "Collected messages waiting to be processed", staged)
        yield gauge(
            "cdphub_staged_oldest_age_seconds",
            "Age of the oldest message waiting to be processed (0 when none waits)",
            max(age, 0.0),
        )
        yield gauge(
            "cdphub_profile_refresh_queue",
            "Profiles waiting for the refresh of their computed traits and segments",
            refresh,
        )
        yield gauge(
            "cdphub_dsars_open", "Data subject requests not completed or rejected", dsars_open
        )
        yield gauge(
            "cdphub_dsars_overdue", "Open data subject requests past their due date", dsars_overdue
        )


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def exposition() -> bytes:
    """The counted metrics (of every process, in multiprocess mode), then the read ones."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    read = CollectorRegistry()
    read.register(DatabaseCollector())
    return generate_latest(counted) + generate_latest(read)


def scrape_allowed(request: HttpRequest) -> bool | None:
    """None when metrics are off (no token, no network); else whether this request may read."""
    token = settings.CDPHUB_METRICS_TOKEN
    networks = settings.CDPHUB_METRICS_NETWORKS
    if not token and not networks:
        return None
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in networks)


def metrics_view(request: HttpRequest) -> HttpResponse:
    allowed = scrape_allowed(request)
    if allowed is None:
        return JsonResponse({"code": "not_found", "message": "metrics are off"}, status=404)
    if not allowed:
        return JsonResponse(
            {
                "code": "forbidden",
                "message": "metrics need the bearer token or an address in CDPHUB_METRICS_NETWORKS",
            },
            status=403,
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Answers ``/metrics``; counts and times every other request by its route."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == METRICS_PATH:
            return metrics_view(request)
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response
