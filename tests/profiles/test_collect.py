from __future__ import annotations

import base64
import gzip
import json

import pytest

from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, RejectedMessage
from profiles.services import source_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staged_only")]


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(client, path, body, key=None, raw=None, **headers):
    data = raw if raw is not None else json.dumps(body)
    if key:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    return client.post(path, data=data, content_type="application/json", **headers)


def test_batch_is_staged_with_batch_context_merged(client, source):
    _, key = source
    body = {
        "batch": [
            {"type": "identify", "userId": "u-1", "messageId": "m1", "traits": {"a": 1}},
            {
                "type": "track",
                "anonymousId": "anon-1",
                "event": "Viewed",
                "messageId": "m2",
                "context": {"ip": "1.2.3.4"},
            },
        ],
        "context": {"library": {"name": "test"}, "ip": "9.9.9.9"},
        "integrations": {"All": True},
    }
    response = post(client, "/v1/batch", body, key)
    assert response.status_code == 200
    assert response.json()["success"] is True
    staged = {m.message_id: m for m in PendingMessage.objects.all()}
    assert set(staged) == {"m1", "m2"}
    assert staged["m2"].payload["context"] == {"library": {"name": "test"}, "ip": "1.2.3.4"}
    assert staged["m1"].payload["integrations"] == {"All": True}


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_AUTHORIZATION": basic("wk_unknown")},
        {"HTTP_X_WRITE_KEY": "wk_unknown"},
        {},
    ],
)
def test_unknown_or_missing_write_key_is_401(client, source, headers):
    response = client.post(
        "/v1/track",
        data=json.dumps({"userId": "u", "event": "E"}),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"
    assert not PendingMessage.objects.exists()


def test_inactive_source_is_401(client, source):
    src, key = source
    src.is_active = False
    src.save()
    response = post(client, "/v1/track", {"userId": "u", "event": "E"}, key)
    assert response.status_code == 401


def test_write_key_in_body_and_header(client, source):
    _, key = source
    response = post(client, "/v1/track", {"userId": "u", "event": "E", "writeKey": key})
    assert response.status_code == 200
    response = post(client, "/v1/track", {"userId": "u", "event": "E"}, HTTP_X_WRITE_KEY=key)
    assert response.status_code == 200
    assert PendingMessage.objects.count() == 2
    assert "writeKey" not in PendingMessage.objects.first().payload


def test_invalid_json_is_400(client, source):
    _, key = source
    response = post(client, "/v1/batch", None, key, raw="{not json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert "message" in response.json()


def test_batch_without_list_is_400(client, source):
    _, key = source
    response = post(client, "/v1/batch", {"batch": {"type": "track"}}, key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_batch"


def test_oversize_batch_is_400(client, source, settings):
    _, key = source
    settings.CDPHUB_INGEST_MAX_BATCH_BYTES = 2000
    body = {"batch": [{"type": "track", "userId": "u", "event": "E", "p": "x" * 3000}]}
    response = post(client, "/v1/batch", body, key)
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert not PendingMessage.objects.exists()


def test_oversize_single_message_is_400(client, source):
    _, key = source
    body = {"userId": "u", "event": "Big", "properties": {"x": "y" * 40_000}}
    response = post(client, "/v1/track", body, key)
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"


def test_too_many_messages_is_400(client, source, settings):
    _, key = source
    settings.CDPHUB_INGEST_MAX_BATCH_MESSAGES = 2
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 3}
    response = post(client, "/v1/batch", body, key)
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"


def test_oversize_message_in_batch_is_rejected_alone(client, source):
    _, key = source
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Big", "properties": {"x": "y" * 40_000}},
            {"type": "track", "userId": "u", "event": "Small", "messageId": "ok"},
        ]
    }
    response = post(client, "/v1/batch", body, key)
    assert response.status_code == 200
    assert list(PendingMessage.objects.values_list("message_id", flat=True)) == ["ok"]
    assert "more than the limit" in RejectedMessage.objects.get().reason


def test_gzip_body(client, source):
    _, key = source
    body = {"batch": [{"type": "page", "anonymousId": "a-1", "name": "Home", "messageId": "g1"}]}
    response = client.post(
        "/v1/batch",
        data=gzip.compress(json.dumps(body).encode()),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=basic(key),
    )
    assert response.status_code == 200
    assert PendingMessage.objects.get().message_id == "g1"


def test_bad_gzip_is_400(client, source):
    _, key = source
    response = client.post(
        "/v1/batch",
        data=b"not gzip",
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=basic(key),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_gzip"


@pytest.mark.parametrize(
    "message, reason",
    [
        ({"type": "track", "event": "E"}, "userId or anonymousId is required"),
        ({"type": "track", "userId": "undefined", "event": "E"}, "userId or anonymousId"),
        ({"type": "track", "userId": "u"}, "track needs 'event'"),
        ({"type": "alias", "userId": "u"}, "alias needs 'previousId'"),
        ({"type": "group", "userId": "u"}, "group needs 'groupId'"),
        ({"type": "bogus", "userId": "u"}, "'type' must be one of"),
        ({"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"}, "ISO 8601"),
        ({"type": "identify", "userId": "u", "traits": ["x"]}, "'traits' must be a JSON object"),
        ("just a string", "must be a JSON object"),
    ],
)
def test_bad_message_is_rejected_alone_and_kept(client, source, message, reason):
    _, key = source
    body = {"batch": [{"type": "track", "userId": "u", "event": "Good"}, message]}
    response = post(client, "/v1/batch", body, key)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["index"] == 1
    assert PendingMessage.objects.count() == 1
    rejected = RejectedMessage.objects.get()
    assert reason in rejected.reason
    assert rejected.reason.startswith("message 1:")


def test_bad_single_message_is_400_and_kept(client, source):
    _, key = source
    response = post(client, "/v1/track", {"userId": "u"}, key)
    assert response.status_code == 400
    assert response.json() == {"code": "invalid_message", "message": "track needs 'event'"}
    assert RejectedMessage.objects.count() == 1


def test_retried_batch_is_stored_once(client, source):
    _, key = source
    body = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "same"}]}
    assert post(client, "/v1/batch", body, key).json()["accepted"] == 1
    pending_process()
    second = post(client, "/v1/batch", body, key).json()
    assert second["accepted"] == 0
    assert second["duplicates"] == 1
    pending_process()
    assert Event.objects.count() == 1
    assert not PendingMessage.objects.exists()


def test_same_message_id_from_another_source_is_kept(client, source):
    _, key = source
    _, other_key = source_create(name="App")
    body = {"type": "track", "userId": "u", "event": "E", "messageId": "same"}
    post(client, "/v1/track", body, key)
    post(client, "/v1/track", body, other_key)
    assert PendingMessage.objects.count() == 2


def test_clock_skew_is_corrected(client, source):
    _, key = source
    body = {
        "type": "track",
        "userId": "u",
        "event": "E",
        # The device clock is one hour ahead: sentAt and timestamp both carry the skew.
        "timestamp": "2030-01-01T13:00:00Z",
        "sentAt": "2030-01-01T13:00:10Z",
    }
    post(client, "/v1/track", body, key)
    staged = PendingMessage.objects.get()
    assert (staged.received_at - staged.timestamp).total_seconds() == pytest.approx(10, abs=0.001)


def test_no_trailing_slash_and_no_redirect(client, source):
    _, key = source
    for path in ("/v1/identify", "/v1/page", "/v1/screen"):
        response = post(client, path, {"userId": "u"}, key)
        assert response.status_code == 200, path


def test_processing_end_to_end(client, source):
    _, key = source
    body = {
        "batch": [
            {"type": "page", "anonymousId": "anon-9", "name": "Home"},
            {
                "type": "identify",
                "userId": "u-9",
                "anonymousId": "anon-9",
                "traits": {"email": " Anna@Example.com ", "name": "Anna"},
            },
            {"type": "track", "userId": "u-9", "event": "Order Completed"},
        ]
    }
    post(client, "/v1/batch", body, key)
    assert pending_process() == 3
    identities = dict(Identity.objects.values_list("kind", "value"))
    assert identities == {"anonymous_id": "anon-9", "user_id": "u-9", "email": "anna@example.com"}
    assert {e.profile_id for e in Event.objects.all()} == {Identity.objects.first().profile_id}
    assert not PendingMessage.objects.exists()


def test_collection_endpoints_are_in_the_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    for path in ("/v1/batch", "/v1/track", "/v1/identify", "/v1/alias"):
        assert "post" in schema["paths"][path]
