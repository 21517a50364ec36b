"""A message that cannot be processed is isolated: moved to the rejected messages with its
reason, while the rest of its batch and everything staged behind it is processed. Whatever the
error, including one raised while the claimed rows are read."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from profiles.ingest import hooks
from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, RejectedMessage
from tests.profiles.test_collect import post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staged_only")]

LONG_EMAIL = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 63, "e" * 40]) + ".com"


def good_batch(count: int = 5) -> dict:
    return {
        "batch": [
            {"type": "track", "userId": f"good-{n}", "event": "Good", "messageId": f"good-{n}"}
            for n in range(count)
        ]
    }


def stage_raw(source_id: int, message_id: str, timestamp_sql: str, payload: str = "{}") -> None:
    """A staged row as an earlier version (or another writer) may have left it, bypassing
    the checks at collection."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_pendingmessage "
            "(source_id, message_id, type, payload, timestamp, received_at) "
            f"VALUES (%s, %s, 'track', %s::jsonb, {timestamp_sql}, now())",  # noqa: S608
            [source_id, message_id, payload],
        )


def test_long_email_is_the_length_of_an_address_django_accepts():
    from django.core.validators import validate_email

    validate_email(LONG_EMAIL)
    assert 256 <= len(LONG_EMAIL) <= 320


@pytest.mark.parametrize(
    "poison",
    [
        {"type": "track", "userId": "p", "event": "E", "timestamp": "0001-01-01T00:00:00+14:00"},
        {"type": "track", "userId": "p", "event": "E", "timestamp": "9999-12-31T23:59:59-14:00"},
        {"type": "identify", "userId": "p", "traits": {"email": LONG_EMAIL}},
        {"type": "identify", "userId": "p", "context": {"traits": {"email": LONG_EMAIL}}},
    ],
    ids=["before-year-1", "after-year-9999", "long-email", "long-email-in-context"],
)
def test_poison_message_sent_by_anyone_does_not_stop_processing(client, source, poison):
    _, key = source
    # Given a poison message collected first, then good ones behind it
    assert post(client, "/v1/batch", {"batch": [poison]}, key).status_code == 200
    assert post(client, "/v1/batch", good_batch(), key).status_code == 200

    # When processing runs, the good messages are processed, and nothing is left waiting
    pending_process()
    assert Event.objects.filter(name="Good").count() == 5
    assert not PendingMessage.objects.exists()
    # The poison message was either processed with its unusable part dropped or rejected.
    assert Event.objects.filter(user_id="p").count() + RejectedMessage.objects.count() == 1
    assert not Identity.objects.filter(value=LONG_EMAIL).exists()


@pytest.mark.parametrize(
    "timestamp_sql",
    ["'0001-01-01 00:00:00+14'::timestamptz", "'9999-12-31 23:59:59-14'::timestamptz"],
)
def test_a_row_that_cannot_be_read_is_rejected_and_the_rest_processed(
    client, source, timestamp_sql
):
    src, key = source
    stage_raw(src.id, "unreadable", timestamp_sql, '{"type": "track", "userId": "x", "event": "E"}')
    post(client, "/v1/batch", good_batch(), key)

    pending_process()

    assert Event.objects.filter(name="Good").count() == 5
    rejected = RejectedMessage.objects.get()
    assert rejected.message_id == "unreadable"
    assert rejected.payload == {"type": "track", "userId": "x", "event": "E"}
    assert rejected.reason.startswith("processing failed:")
    assert not PendingMessage.objects.exists()


def test_process_pending_command_isolates_the_poison_message(client, source, capsys):
    src, key = source
    stage_raw(src.id, "unreadable", "'0001-01-01 00:00:00+14'::timestamptz")
    post(client, "/v1/batch", good_batch(), key)

    call_command("process_pending")

    assert Event.objects.filter(name="Good").count() == 5
    assert RejectedMessage.objects.filter(message_id="unreadable").exists()


@pytest.fixture
def failing_hook():
    """A processing hook (another app's reaction to messages) that fails on one message."""

    def hook(messages):
        for message in messages:
            marker = (message.payload.get("properties") or {}).get("fail")
            if marker == "python":
                raise RuntimeError("the hook cannot handle this message")
            if marker == "database":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1 / 0")

    hooks.register(hook)
    yield
    hooks.unregister(hook)


@pytest.mark.parametrize("kind", ["python", "database"])
def test_any_error_isolates_only_its_message(client, source, failing_hook, kind):
    _, key = source
    batch = good_batch(10)
    batch["batch"].insert(
        4,
        {
            "type": "track",
            "userId": "bad",
            "event": "Bad",
            "messageId": "bad",
            "properties": {"fail": kind},
        },
    )
    post(client, "/v1/batch", batch, key)

    assert pending_process(batch_size=4) == 11

    assert Event.objects.filter(name="Good").count() == 10
    rejected = RejectedMessage.objects.get()
    assert rejected.message_id == "bad"
    assert rejected.payload["properties"] == {"fail": kind}
    expected = "cannot handle this message" if kind == "python" else "division by zero"
    assert expected in rejected.reason
    assert not PendingMessage.objects.exists()
