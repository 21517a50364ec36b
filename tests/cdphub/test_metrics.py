"""Prometheus metrics: protected (token or network, off without either), counting requests,
collected messages, processing, segment refreshes and deliveries where they happen, reading the
backlog, the refresh queue and the open and overdue requests from the database, and adding up
the counts of every gunicorn worker (multiprocess mode)."""

from __future__ import annotations

import re
import tempfile
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from prometheus_client import REGISTRY

from consent.dsar import dsar_create
from consent.models import DataSubjectRequest
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.segments.membership import segment_refresh
from profiles.services import source_create
from tests.cdphub.test_delivery import ScriptedReceiver, collect, webhook
from tests.factories import ProfileFactory, SegmentFactory
from tests.server import current_database_url, running_server

pytestmark = pytest.mark.django_db

TOKEN = "t" * 40


@pytest.fixture
def scraping(settings):
    settings.CDPHUB_METRICS_TOKEN = TOKEN
    settings.CDPHUB_METRICS_NETWORKS = []


def scrape(client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def value(text: str, name: str, **labels) -> float:
    """One sample of the exposition text (0 when absent)."""
    label_text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "")
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def counted(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_are_off_without_a_token_or_network(client, settings):
    settings.CDPHUB_METRICS_TOKEN = ""
    settings.CDPHUB_METRICS_NETWORKS = []
    assert client.get("/metrics").status_code == 404


def test_a_scraper_needs_the_token_or_an_allowed_address(client, settings, scraping):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    settings.CDPHUB_METRICS_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.2").status_code == 403


def test_metrics_answer_a_scraper_coming_by_address(client, scraping):
    # Not an allowed host: like the probes, answered before the host check.
    response = client.get(
        "/metrics", HTTP_HOST="10.0.0.7:8000", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert response.status_code == 200


def test_collected_messages_and_requests_are_counted(client, scraping):
    _, key = source_create(name="Web")
    before = scrape(client)
    batch = {
        "batch": [
            {"type": "track", "userId": "u-1", "event": "A", "messageId": "m-1"},
            {"type": "track", "userId": "u-1", "event": "B", "messageId": "m-1"},
            {"type": "track", "event": "No one"},
        ],
        "writeKey": key,
    }
    assert client.post("/v1/batch", batch, content_type="application/json").status_code == 200
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("cdphub_collected_messages_total", outcome="accepted") == 1
    assert grew("cdphub_collected_messages_total", outcome="duplicate") == 1
    assert grew("cdphub_collected_messages_total", outcome="rejected") == 1
    assert grew("cdphub_http_requests_total", route="v1/batch", method="POST", status="200") == 1
    assert grew("cdphub_http_request_duration_seconds_count", route="v1/batch") == 1
    assert value(after, "cdphub_staged_messages") == 1
    assert value(after, "cdphub_staged_oldest_age_seconds") >= 0


def test_processing_segment_refreshes_and_queues_are_measured(client, scraping):
    source, _ = source_create(name="App")
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "userId": "u-1", "event": "A", "messageId": "m-1"}],
    )
    processed = counted("cdphub_processed_messages_total")
    refreshes = counted("cdphub_segment_refresh_duration_seconds_count", outcome="ok")
    pending_process()
    segment_refresh(segment=SegmentFactory(rule={"trait": "plan", "op": "eq", "value": "pro"}))

    assert counted("cdphub_processed_messages_total") == processed + 1
    assert counted("cdphub_segment_refresh_duration_seconds_count", outcome="ok") == refreshes + 1
    text = scrape(client)
    assert value(text, "cdphub_staged_messages") == 0
    assert value(text, "cdphub_profile_refresh_queue") == 0


def test_open_and_overdue_requests_are_read_at_each_scrape(client, scraping):
    dsar_create(kind="access", email="a@example.com")
    late = dsar_create(kind="erasure", email="b@example.com")
    DataSubjectRequest.objects.filter(pk=late.pk).update(due_at=timezone.now() - timedelta(days=1))
    done = dsar_create(kind="access", email="c@example.com")
    DataSubjectRequest.objects.filter(pk=done.pk).update(
        status=DataSubjectRequest.Status.COMPLETED, due_at=timezone.now() - timedelta(days=9)
    )
    text = scrape(client)
    assert value(text, "cdphub_dsars_open") == 2
    assert value(text, "cdphub_dsars_overdue") == 1


def test_delivery_attempts_are_counted_by_kind_and_outcome(delivery_engine):
    from cdphub.delivery import deliveries_send

    source, _ = source_create(name="Shop")
    delivered = counted("cdphub_delivery_attempts_total", kind="webhook", outcome="delivered")
    items = counted("cdphub_delivery_items_total", kind="webhook", outcome="delivered")
    with ScriptedReceiver() as receiver:
        webhook(receiver.url)
        collect(source, "Product Viewed", "Order Completed")
        assert deliveries_send() == 1
    assert (
        counted("cdphub_delivery_attempts_total", kind="webhook", outcome="delivered")
        == delivered + 1
    )
    assert counted("cdphub_delivery_items_total", kind="webhook", outcome="delivered") == items + 2


@pytest.mark.django_db(transaction=True)
def test_the_counts_of_every_gunicorn_worker_are_added_up():
    ProfileFactory()  # something in the database for the read metrics
    _, key = source_create(name="Multi")
    env = {
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="cdphub-metrics-"),
        "CDPHUB_METRICS_NETWORKS": "127.0.0.1/32",
        "CDPHUB_INGEST_PROCESSING": "off",
    }
    with running_server(database_url=current_database_url(), workers=3, env=env) as url:
        for n in range(30):
            message = {"userId": f"u-{n}", "event": "A", "messageId": f"m-{n}", "writeKey": key}
            assert requests.post(f"{url}/v1/track", json=message, timeout=30).status_code == 200
        # Whichever worker answers a scrape, it reports the requests every worker counted.
        for _ in range(6):
            text = requests.get(f"{url}/metrics", timeout=30).text
            assert value(text, "cdphub_collected_messages_total", outcome="accepted") == 30
            assert value(text, "cdphub_staged_messages") == 30
