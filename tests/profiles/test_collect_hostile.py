"""Collection loses nothing because of one bad value: a bad message is rejected alone with its
reason, the good ones of its batch are stored, and no body makes an endpoint answer 500."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client

from profiles.ingest import hooks
from profiles.ingest.processing import pending_process
from profiles.models import Event, PendingMessage, RejectedMessage
from tests.profiles.test_collect import basic, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staged_only")]


def good(message_id: str = "good") -> dict:
    return {"type": "track", "userId": "u-1", "event": "Good", "messageId": message_id}


def batch_with(client, key, bad: dict) -> dict:
    response = post(client, "/v1/batch", {"batch": [good(), bad]}, key)
    assert response.status_code == 200, response.content
    assert PendingMessage.objects.filter(message_id="good").exists()
    return response.json()


# --- Time ---------------------------------------------------------------------------------------


def test_timestamp_without_time_zone_is_read_as_utc(client, source):
    _, key = source
    message = {**good("naive"), "timestamp": "2026-05-05T05:05:05"}
    body = {"batch": [message], "sentAt": "2026-05-05 05:05:05"}
    response = post(client, "/v1/batch", body, key)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    staged = PendingMessage.objects.get()
    assert staged.original_timestamp == datetime(2026, 5, 5, 5, 5, 5, tzinfo=UTC)
    assert staged.sent_at == datetime(2026, 5, 5, 5, 5, 5, tzinfo=UTC)
    # sentAt equals the event time: the event happened when it was received.
    assert staged.timestamp == staged.received_at


@pytest.mark.parametrize(
    "timestamp, sent_at",
    [
        ("0001-01-01T00:00:00+14:00", None),
        ("9999-12-31T23:59:59-14:00", None),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
        ("1970-01-01T00:00:00Z", None),
        ("2999-01-01T00:00:00Z", None),
    ],
)
def test_timestamp_outside_the_window_is_clamped_to_the_time_received(
    client, source, timestamp, sent_at
):
    _, key = source
    message = {**good("far"), "timestamp": timestamp}
    if sent_at:
        message["sentAt"] = sent_at
    response = post(client, "/v1/track", message, key)
    assert response.status_code == 200, response.content
    staged = PendingMessage.objects.get()
    assert staged.timestamp == staged.received_at
    # What the client sent is kept as it was sent.
    assert staged.payload["timestamp"] == timestamp
    pending_process()
    assert Event.objects.get().timestamp == staged.received_at


def test_explicit_timestamp_without_sent_at_is_kept_exactly(client, source):
    _, key = source
    message = {**good("exact"), "timestamp": "2026-01-02T03:04:05.678Z"}
    post(client, "/v1/track", message, key)
    pending_process()
    event = Event.objects.get()
    assert event.timestamp == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert event.original_timestamp == event.timestamp
    assert event.sent_at is None


def test_original_timestamp_and_sent_at_are_kept_on_the_event(client, source):
    _, key = source
    message = {
        **good("skewed"),
        "timestamp": "2030-01-01T13:00:00Z",
        "sentAt": "2030-01-01T13:00:10Z",
    }
    post(client, "/v1/track", message, key)
    pending_process()
    event = Event.objects.get()
    assert event.original_timestamp == datetime(2030, 1, 1, 13, 0, tzinfo=UTC)
    assert event.sent_at == datetime(2030, 1, 1, 13, 0, 10, tzinfo=UTC)
    assert (event.received_at - event.timestamp).total_seconds() == pytest.approx(10, abs=0.001)


# --- Values the database cannot store -----------------------------------------------------------

TRACK = {"type": "track", "userId": "u", "event": "E"}


@pytest.mark.parametrize(
    "bad, where",
    [
        (
            {"type": "track", "userId": "u", "event": "E", "properties": {"k": "a\x00b"}},
            "properties.k",
        ),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"k\x00": 1}}, "properties"),
        ({"type": "track", "userId": "u", "event": "E\x00"}, "event"),
        ({"type": "track", "userId": "u\x00", "event": "E"}, "userId"),
        ({"type": "track", "userId": "u", "event": "E", "messageId": "m\x00"}, "messageId"),
        (
            {"type": "track", "userId": "u", "event": "E", "context": {"l": ["x", "\x00"]}},
            "context.l[1]",
        ),
    ],
)
def test_nul_character_rejects_its_message_alone(client, source, bad, where):
    _, key = source
    result = batch_with(client, key, bad)
    assert result["accepted"] == 1
    reason = result["rejected"][0]["reason"]
    assert "NUL character" in reason
    assert where in reason
    rejected = RejectedMessage.objects.get()
    # Kept for review, the NUL shown as U+FFFD (the database cannot keep it).
    assert "\x00" not in json.dumps(rejected.payload, ensure_ascii=False)
    assert "\ufffd" in json.dumps(rejected.payload, ensure_ascii=False)


def nested_json(depth: int) -> str:
    """Properties nested ``depth`` levels deep, as JSON text (too deep for Python's json)."""
    return '{"a": ' * depth + '"deep"' + "}" * depth


def track_json(message_id: str, properties: str) -> str:
    return (
        f'{{"type": "track", "userId": "u-1", "event": "E", "messageId": "{message_id}", '
        f'"properties": {properties}}}'
    )


def test_deeply_nested_message_is_rejected_and_kept_readable(client, source, user_with_role):
    _, key = source
    raw = f'{{"batch": [{json.dumps(good())}, {track_json("deep", nested_json(1000))}]}}'
    response = post(client, "/v1/batch", None, key, raw=raw)
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["accepted"] == 1
    assert "nested deeper than" in result["rejected"][0]["reason"]
    rejected = RejectedMessage.objects.get()
    assert rejected.message_id == "deep"

    # Readable by every role that reads rejected messages, with or without personal data.
    for role in ("Data engineer", "Analyst", "Privacy officer"):
        browser = Client()
        browser.force_login(user_with_role(role))
        api = browser.get("/api/rejected-messages/")
        assert api.status_code == 200, role
        assert api.json()["results"][0]["message_id"] == "deep"
        page = browser.get(f"/admin/profiles/rejectedmessage/{rejected.pk}/change/")
        assert page.status_code == 200, role
        assert browser.get("/admin/profiles/rejectedmessage/").status_code == 200, role


def test_single_deeply_nested_message_is_400_not_500(client, source):
    _, key = source
    response = post(client, "/v1/track", None, key, raw=track_json("deep", nested_json(1000)))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_message"


def test_message_size_limit_counts_bytes_not_characters(client, source):
    _, key = source
    # 20,000 characters, 60,000 bytes in UTF-8: twice the 32 KB limit.
    result = batch_with(client, key, {**good("euro"), "properties": {"x": "€" * 20_000}})
    assert result["accepted"] == 1
    assert "bytes, more than the limit of 32768" in result["rejected"][0]["reason"]


def test_integer_beyond_64_bits_is_rejected_alone(client, source):
    _, key = source
    raw = (
        '{"batch": [{"type": "track", "userId": "u-1", "event": "Good", "messageId": "good"},'
        ' {"type": "track", "userId": "u", "event": "E", "properties": {"n": 1e999}}]}'
    )
    response = post(client, "/v1/batch", None, key, raw=raw)
    # Not a JSON document Python can read at all (infinity): the body is refused as a whole.
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


# --- Counters -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("companions", [0, 1], ids=["alone", "in-a-batch"])
def test_copy_arriving_while_the_first_is_processed_counts_as_duplicate(source, companions):
    """Alone, a message is staged with its duplicates' check in one round trip; in a batch,
    in a transaction of two statements: both see the copy the worker commits meanwhile."""
    _, key = source
    message = {"batch": [good("raced")]}
    headers = {"HTTP_AUTHORIZATION": basic(key)}
    assert (
        Client()
        .post("/v1/batch", json.dumps(message), content_type="application/json", **headers)
        .json()["accepted"]
        == 1
    )

    # Processing holds its transaction open after moving the message from staging to events.
    processing = threading.Event()
    release = threading.Event()

    def hold(messages):
        processing.set()
        release.wait(10)

    hooks.register(hold)
    responses = []

    def process():
        try:
            pending_process()
        finally:
            connection.close()

    def send_copy():
        copy = {"batch": message["batch"] + [good(f"new-{n}") for n in range(companions)]}
        try:
            responses.append(
                Client().post(
                    "/v1/batch", json.dumps(copy), content_type="application/json", **headers
                )
            )
        finally:
            connection.close()

    worker = threading.Thread(target=process)
    worker.start()
    try:
        assert processing.wait(10)
        sender = threading.Thread(target=send_copy)
        sender.start()
        time.sleep(0.5)  # the copy reaches the database while processing holds the message
    finally:
        release.set()
        worker.join(20)
        hooks._hooks.remove(hold)
    sender.join(20)

    assert responses[0].status_code == 200
    assert responses[0].json()["accepted"] == companions
    assert responses[0].json()["duplicates"] == 1
    assert Event.objects.filter(message_id="raced").count() == 1
    assert not PendingMessage.objects.filter(message_id="raced").exists()


def test_deep_rejected_message_stored_earlier_is_readable_without_pii_access(
    source, user_with_role
):
    # Given a deep rejected message kept by an earlier version, before they were cut
    src, _ = source
    payload: object = {"email": "anna@example.com"}
    for _ in range(400):
        payload = {"a": payload}
    RejectedMessage.objects.create(
        source=src, payload=payload, reason="deep", received_at=datetime.now(UTC)
    )
    browser = Client()
    browser.force_login(user_with_role("Analyst"))
    response = browser.get("/api/rejected-messages/")
    assert response.status_code == 200
    assert "anna@example.com" not in response.content.decode()
