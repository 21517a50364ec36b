"""Replay: the stored events of a time range sent to a destination again, in order, with their
message ids, through the same outbox and consent check as any delivery; from the service, the
API and the admin, each with its permission; bad ranges refused, changing nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from cdphub.delivery import deliveries_send
from cdphub.models import Delivery
from profiles.destinations.stream import destination_replay
from profiles.models import Event
from profiles.services import source_create
from tests.cdphub.test_delivery import ScriptedReceiver, collect, webhook

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def engine(delivery_engine):
    return delivery_engine


def window(hours: int = 1) -> dict:
    now = timezone.now()
    return {"since": now - timedelta(hours=hours), "until": now + timedelta(hours=hours)}


def test_a_replay_sends_the_ranges_events_again_in_order_with_their_ids():
    shop, _ = source_create(name="Web shop")
    other, _ = source_create(name="Kiosk")
    with ScriptedReceiver() as receiver:
        destination, _ = webhook(receiver.url, source=shop)
        collect(shop, "Product Viewed", "Order Completed")
        collect(other, "Elsewhere", user="u-2")
        Event.objects.filter(name="Product Viewed").update(
            timestamp=timezone.now() - timedelta(days=3)  # outside the range
        )
        Delivery.objects.all().delete()  # as if the receiver had been added only now

        assert destination_replay(destination=destination, **window()) == 1
        deliveries_send()

    [batch] = receiver.batches
    assert [(m["messageId"], m["event"], m["profileId"] > 0) for m in batch] == [
        ("u-1-1-Order Completed", "Order Completed", True)
    ]


def test_a_range_too_large_or_empty_is_refused_and_queues_nothing(engine):
    engine.CDPHUB_REPLAY_MAX_EVENTS = 1
    shop, _ = source_create(name="Web shop")
    destination, _ = webhook("http://127.0.0.1:9/hook")
    collect(shop, "A", "B")
    Delivery.objects.all().delete()
    with pytest.raises(ValidationError, match="more than 1 events in this range"):
        destination_replay(destination=destination, **window())
    since = timezone.now()
    with pytest.raises(ValidationError, match="must be after since"):
        destination_replay(destination=destination, since=since, until=since)
    assert not Delivery.objects.exists()


def test_the_api_replays_for_a_writer_only(api_client_with_scopes):
    shop, _ = source_create(name="Web shop")
    destination, _ = webhook("http://127.0.0.1:9/hook")
    collect(shop, "A")
    url = f"/api/destinations/{destination.pk}/replay/"
    body = {key: value.isoformat() for key, value in window().items()}
    assert api_client_with_scopes("profiles:read").post(url, body, format="json").status_code == 403
    writer = api_client_with_scopes("profiles:read", "profiles:write")
    answer = writer.post(url, body, format="json")
    assert answer.status_code == 200 and answer.json() == {"queued": 1}
    backwards = {"since": body["until"], "until": body["since"]}
    refused = writer.post(url, backwards, format="json")
    assert refused.status_code == 400
    assert "must be after since" in json.dumps(refused.json())


def test_a_marketer_replays_from_the_destinations_page(client, user_with_role):
    shop, _ = source_create(name="Web shop")
    destination, _ = webhook("http://127.0.0.1:9/hook")
    collect(shop, "A", "B")
    Delivery.objects.all().delete()
    page = reverse("admin:profiles_destination_replay", args=[destination.pk])
    form = {key: value.strftime("%Y-%m-%dT%H:%M") for key, value in window(hours=2).items()}

    client.force_login(user_with_role("Sales"))
    assert client.post(page, form).status_code == 403

    client.force_login(user_with_role("Marketer"))
    assert client.get(page).status_code == 200
    done = client.post(page, form, follow=True)
    assert "2 events queued" in done.content.decode()
    assert Delivery.objects.filter(destination=destination).count() == 2
