"""Destinations over the REST API: created with the signing secret in that answer only,
refused with the reason for an internal URL, their deliveries (payloads masked without
pii:read) and dead letters retried, paused and resumed, each with its permission."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cdphub.delivery import deliveries_send
from cdphub.models import Delivery
from profiles.models import Destination
from profiles.services import source_create
from tests.cdphub.test_delivery import Answer, ScriptedReceiver, collect

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def engine(delivery_engine):
    return delivery_engine


def body(url: str, **extra) -> dict:
    return {
        "name": "Partner",
        "kind": "webhook",
        "config": {"url": url, "headers": {"X-Token": "abc"}},
        "purpose_code": "analytics",
        "event_types": ["track"],
        **extra,
    }


def test_create_answers_the_secret_once(api_client_with_scopes):
    client = api_client_with_scopes("profiles:read", "profiles:write")
    created = client.post("/api/destinations/", body("http://127.0.0.1:9/hook"), format="json")
    assert created.status_code == 201, created.json()
    secret = created.json()["signing_secret"]
    assert secret.startswith("whsec_")
    assert created.json()["deliveries"]["dead"] == 0

    shown = client.get(f"/api/destinations/{created.json()['id']}/").json()
    assert "signing_secret" not in shown
    assert secret not in str(shown)
    assert shown["secret_prefix"] == secret[:10]


def test_an_internal_url_is_a_400_naming_the_reason(api_client_with_scopes, engine):
    engine.CDPHUB_OUTBOUND_ALLOWLIST = []
    client = api_client_with_scopes("profiles:write")
    refused = client.post("/api/destinations/", body("http://192.168.1.20/hook"), format="json")
    assert refused.status_code == 400
    assert "192.168.1.20 is a private address" in str(refused.json()["errors"]["config"])
    assert not Destination.objects.exists()


def test_a_read_only_key_cannot_create(api_client_with_scopes):
    client = api_client_with_scopes("profiles:read")
    response = client.post("/api/destinations/", body("http://127.0.0.1:9/"), format="json")
    assert response.status_code == 403
    assert not Destination.objects.exists()


def test_dead_letters_listed_masked_and_retried(api_client_with_scopes):
    writer = api_client_with_scopes("profiles:read", "profiles:write")
    with ScriptedReceiver(Answer(status=400, body=b"no")) as receiver:
        created = writer.post("/api/destinations/", body(receiver.url), format="json").json()
        collect(source_create(name="Shop")[0], "A", user="ann@example.com")
        deliveries_send()

        reader = api_client_with_scopes("profiles:read")
        dead = reader.get(f"/api/destinations/{created['id']}/deliveries/?status=dead").json()
        [letter] = dead["results"]
        assert letter["response_body"] == "no"
        assert letter["payload"]["userId"] != "ann@example.com"  # masked without pii:read
        bad = reader.get(f"/api/destinations/{created['id']}/deliveries/?status=lost")
        assert bad.status_code == 400
        assert reader.post(f"/api/destinations/{created['id']}/retry/").status_code == 403

        retried = writer.post(
            f"/api/destinations/{created['id']}/retry/",
            {"deliveries": [letter["id"]]},
            format="json",
        )
        assert retried.json() == {"retried": 1}
        deliveries_send()

    assert Delivery.objects.get(pk=letter["id"]).status == "delivered"
    attempts = writer.get(f"/api/destinations/{created['id']}/attempts/").json()["results"]
    assert [a["outcome"] for a in attempts] == ["delivered", "permanent"]


def test_pause_and_resume_need_the_change_permission(user_with_role):
    destination_id = None
    marketer = APIClient()
    marketer.force_authenticate(user_with_role("Marketer"))
    created = marketer.post("/api/destinations/", body("http://127.0.0.1:9/"), format="json")
    destination_id = created.json()["id"]

    analyst = APIClient()
    analyst.force_authenticate(user_with_role("Analyst"))
    assert analyst.get(f"/api/destinations/{destination_id}/").status_code == 200
    assert analyst.post(f"/api/destinations/{destination_id}/pause/").status_code == 403

    paused = marketer.post(
        f"/api/destinations/{destination_id}/pause/", {"reason": "migration"}, format="json"
    )
    assert (paused.json()["status"], paused.json()["paused_reason"]) == ("paused", "migration")
    resumed = marketer.post(f"/api/destinations/{destination_id}/resume/")
    assert resumed.json()["status"] == "active"


def test_header_values_are_masked_for_a_key_that_may_only_read(api_client_with_scopes):
    writer = api_client_with_scopes("profiles:read", "profiles:write")
    created = writer.post("/api/destinations/", body("http://127.0.0.1:9/hook"), format="json")
    url = f"/api/destinations/{created.json()['id']}/"
    assert writer.get(url).json()["config"]["headers"] == {"X-Token": "abc"}
    reader = api_client_with_scopes("profiles:read")
    shown = reader.get(url).json()
    assert shown["config"]["headers"] == {"X-Token": "•••"}
    assert "abc" not in str(reader.get("/api/destinations/").json())
