"""The Segment-compatible forward: collected events sent on, as collected, to another
/v1/batch with its write key: here a second source of a real cdphub server, and a scripted
receiver for what goes over the wire and how refusals end."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError

from cdphub.delivery import deliveries_send, delivery_counts
from cdphub.models import Delivery
from profiles.destinations.services import destination_create
from profiles.models import PendingMessage
from profiles.services import source_create
from tests.cdphub.test_delivery import PURPOSE, Answer, ScriptedReceiver, collect
from tests.server import current_database_url, running_server


@pytest.fixture(autouse=True)
def engine(delivery_engine):
    return delivery_engine


def forward(url: str, write_key: str, **options):
    return destination_create(
        name="Partner hub",
        kind="segment_forward",
        config={"url": url, "write_key": write_key},
        purpose_code=PURPOSE,
        **options,
    )


@pytest.mark.django_db(transaction=True)
def test_events_arrive_at_another_hubs_source_once_even_when_sent_again():
    shop, _ = source_create(name="Web shop")
    partner, partner_key = source_create(name="From the shop's hub")
    env = {"CDPHUB_INGEST_PROCESSING": "off"}
    with running_server(database_url=current_database_url(), env=env) as url:
        destination, secret = forward(url, partner_key, source=shop)
        collect(shop, "Product Viewed", "Order Completed")

        assert deliveries_send() == 1
        # A resend of the same batch (at-least-once): the receiver keeps each messageId once.
        Delivery.objects.update(status="pending", batch_key="")
        assert deliveries_send() == 1

    assert secret == ""  # nothing to sign: the write key authenticates the sender
    forwarded = PendingMessage.objects.filter(source=partner).order_by("message_id")
    assert [m.message_id for m in forwarded] == ["u-1-0-Product Viewed", "u-1-1-Order Completed"]
    assert all("profileId" not in m.payload for m in forwarded)
    assert forwarded[0].payload["userId"] == "u-1"
    assert delivery_counts(destination)["delivered"] == 2


@pytest.mark.django_db
def test_the_batch_goes_to_v1_batch_with_the_key_as_basic_user_name():
    shop, _ = source_create(name="Web shop")
    with ScriptedReceiver() as receiver:
        forward(f"{receiver.url}/v1/batch", "wk_partner")  # the path is added, not doubled
        collect(shop, "Signed Up")
        deliveries_send()

    [request] = receiver.requests
    assert request["path"] == f"{urlsplit(receiver.url).path}/v1/batch"
    user = base64.b64decode(request["headers"]["Authorization"].removeprefix("Basic "))
    assert user == b"wk_partner:"
    body = json.loads(request["body"])
    assert [m["event"] for m in body["batch"]] == ["Signed Up"] and "sentAt" in body


@pytest.mark.django_db
def test_a_refused_key_is_a_dead_letter_with_the_answer():
    shop, _ = source_create(name="Web shop")
    refusal = b'{"code": "invalid_write_key", "message": "unknown or inactive write key"}'
    with ScriptedReceiver(Answer(status=401, body=refusal)) as receiver:
        destination, _ = forward(receiver.url, "wk_revoked")
        collect(shop, "Signed Up")
        deliveries_send()

    dead = Delivery.objects.get(destination=destination)
    assert dead.status == "dead" and "invalid_write_key" in dead.response_body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"url": "http://127.0.0.1:9"}, "write_key: the receiving source's write key"),
        ({"write_key": "wk"}, "url: the receiver's address"),
        ({"url": "http://127.0.0.1:9", "write_key": "wk", "x": 1}, "unknown settings: x"),
    ],
)
def test_a_forward_without_its_address_or_key_is_refused_saying_which(config, message):
    with pytest.raises(ValidationError, match=message):
        destination_create(
            name="Partner", kind="segment_forward", config=config, purpose_code=PURPOSE
        )
