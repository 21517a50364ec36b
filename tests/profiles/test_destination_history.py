"""Watching destinations: per hour, what was delivered, retried and refused and how fast the
receiver answered, as a chart on the destination's page and over the API; the dashboard lists
the destinations in trouble (paused, dead letters, retrying, a sync waiting) to those who may
see destinations."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from cdphub.delivery import deliveries_send, delivery_history, destinations_in_trouble
from profiles.destinations.services import destination_create, destination_pause
from profiles.services import source_create
from tests.cdphub.test_delivery import Answer, ScriptedReceiver, collect

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(delivery_engine):
    return source_create(name="Web shop")[0]


def webhook(url: str, name: str = "Partner", **options):
    return destination_create(
        name=name, kind="webhook", config={"url": url}, purpose_code="analytics", **options
    )[0]


@pytest.fixture
def sent(source):
    """A destination that had a 503 (retried), then deliveries, then a 422 (a dead letter)."""
    refused = Answer(status=422, body=b'{"error": "no"}')
    with ScriptedReceiver(Answer(status=503), Answer(), refused) as receiver:
        destination = webhook(receiver.url, batch_size=2)
        collect(source, "A", "B", "C")
        deliveries_send()
    return destination


def test_the_history_counts_each_outcome_in_its_hour(sent):
    history = delivery_history(sent, hours=3)
    assert len(history) == 3
    # Summed: a test running across the turn of an hour splits them over two.
    totals = {
        key: sum(hour[key] for hour in history) for key in ("delivered", "retried", "refused")
    }
    assert totals == {"delivered": 2, "retried": 2, "refused": 1}
    busy = [hour for hour in history if hour["latency_p50_ms"] is not None]
    assert busy
    assert all(hour["latency_p99_ms"] >= hour["latency_p50_ms"] for hour in busy)
    # The rows were queued before the first request: every request's oldest item waited.
    assert all(hour["waited_p99_ms"] >= hour["waited_p50_ms"] > 0 for hour in busy)
    assert history[0]["latency_p50_ms"] is None  # no request two hours ago
    assert [hour["hour"] for hour in history] == sorted(hour["hour"] for hour in history)


def test_the_destination_page_charts_it_and_the_api_gives_it(
    sent, admin_client, api_client_with_scopes
):
    page = admin_client.get(reverse("admin:profiles_destination_change", args=[sent.pk]))
    html = page.content.decode()
    assert "Events sent per hour: delivered, failed and retried, refused" in html
    assert "<svg" in html
    assert "The receiver answered in" in html
    assert "Events reached it" in html

    client = api_client_with_scopes("profiles:read")
    answer = client.get(f"/api/destinations/{sent.pk}/history/?hours=2")
    assert answer.status_code == 200
    assert len(answer.json()) == 2
    assert sum(hour["delivered"] for hour in answer.json()) == 2
    assert sum(hour["refused"] for hour in answer.json()) == 1
    assert any(hour["waited_p99_ms"] for hour in answer.json())
    for bad in ("0", "337", "two"):
        refused = client.get(f"/api/destinations/{sent.pk}/history/?hours={bad}")
        assert refused.status_code == 400
        assert "a whole number from 1 to 336" in str(refused.json())


def test_the_dashboard_lists_destinations_in_trouble(sent, source, admin_client):
    fine = webhook("http://127.0.0.1:9/ok", name="Quiet one")
    paused = webhook("http://127.0.0.1:9/off", name="Switched off")
    destination_pause(destination=paused, reason="paused by hand for maintenance")

    trouble = {row["destination"].name: row for row in destinations_in_trouble()}
    assert set(trouble) == {"Partner", "Switched off"}
    assert trouble["Partner"]["dead"] == 1
    assert trouble["Switched off"]["reason"] == "paused by hand for maintenance"
    assert fine.name not in trouble

    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Destinations in trouble: 2" in html
    assert "paused by hand for maintenance" in html

    nobody = get_user_model().objects.create_user("nobody", password="pw-nobody-1", is_staff=True)
    admin_client.force_login(nobody)
    assert (
        "Destinations in trouble" not in admin_client.get(reverse("admin:index")).content.decode()
    )
