"""Property-based: whatever shape a message has, collection answers JSON (never 500), rejects
it alone with a reason or stores it, keeps the good message beside it, and processing then
handles everything staged (processed or rejected, never stuck)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.ingest.collect import source_cache_clear
from profiles.ingest.processing import pending_process
from profiles.models import Event, PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.profiles.test_collect import basic

pytestmark = pytest.mark.django_db

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("CDPHUB_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

TYPES = ["identify", "track", "page", "screen", "group", "alias"]
text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
) | st.sampled_from(["", "\x00", "a\x00b", "null", "undefined", "€" * 30, "x" * 300])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


@st.composite
def nested(draw) -> object:
    value: object = draw(scalars)
    for _ in range(draw(st.integers(min_value=0, max_value=300))):
        value = {"n": value}
    return value


def moments() -> st.SearchStrategy[str]:
    offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )
    aware = st.builds(
        lambda moment, tz: moment.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        offsets,
    )
    naive = st.builds(
        lambda moment, sep: moment.isoformat(sep=sep), st.datetimes(), st.sampled_from(" T")
    )
    return aware | naive | text


identifiers = text | st.integers() | st.sampled_from(["u-1", "anon-1", "0", "-1"]) | json_values
emails = text | st.emails() | st.just("a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com")
traits = st.fixed_dictionaries(
    {},
    optional={
        "email": emails,
        "phone": text | st.integers(),
        "name": text,
        "$set_once": json_values,
    },
)
known_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(TYPES) | text,
        "userId": identifiers,
        "anonymousId": identifiers,
        "messageId": text | st.integers(),
        "event": text | json_values,
        "name": text,
        "category": json_values,
        "previousId": identifiers,
        "groupId": identifiers,
        "timestamp": moments(),
        "originalTimestamp": moments(),
        "sentAt": moments(),
        "properties": st.dictionaries(text, json_values, max_size=5) | nested() | json_values,
        "traits": traits | json_values,
        "context": st.fixed_dictionaries(
            {}, optional={"traits": traits, "device": st.fixed_dictionaries({"id": identifiers})}
        )
        | json_values,
    },
)
messages = (
    st.builds(
        lambda extra, known: {**extra, **known},
        st.dictionaries(text, json_values, max_size=3),
        known_fields,
    )
    | json_values
)


@pytest.fixture
def write_key(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    source_cache_clear()
    _, key = source_create(name=f"Property {uuid.uuid4()}")
    yield key
    source_cache_clear()


def good_message() -> dict:
    return {"type": "track", "userId": "good", "event": "Good", "messageId": str(uuid.uuid4())}


@PROPERTY_SETTINGS
@given(message=messages, batch_sent_at=st.none() | moments())
def test_any_message_in_a_batch_is_stored_or_rejected_alone(
    client, write_key, message, batch_sent_at
):
    good = good_message()
    body: dict = {"batch": [message, good]}
    if batch_sent_at is not None:
        body["sentAt"] = batch_sent_at
    response = client.post(
        "/v1/batch",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(write_key),
    )

    assert response.status_code == 200, response.content
    result = response.json()
    assert result["accepted"] + result["duplicates"] + len(result["rejected"]) == 2
    assert all(r["reason"] for r in result["rejected"])
    assert PendingMessage.objects.filter(message_id=good["messageId"]).exists()

    pending_process()
    assert not PendingMessage.objects.exists()
    assert Event.objects.filter(message_id=good["messageId"]).exists()


@PROPERTY_SETTINGS
@given(message=messages, path=st.sampled_from(TYPES))
def test_any_single_message_gets_a_json_answer_never_500(client, write_key, path, message):
    response = client.post(
        f"/v1/{path}",
        data=json.dumps(message),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(write_key),
    )
    assert response.status_code in (200, 400), response.content
    assert response["Content-Type"] == "application/json"
    assert "success" in response.json() or response.json()["message"]
    pending_process()
    assert not PendingMessage.objects.exists()


def test_rejected_messages_keep_their_reason_and_stay_readable(client, write_key):
    message = {"type": "track", "userId": "u", "event": "E\x00", "properties": {"a": 2**70}}
    client.post(
        "/v1/batch",
        data=json.dumps({"batch": [message]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(write_key),
    )
    rejected = RejectedMessage.objects.get()
    assert "NUL character" in rejected.reason or "64" in rejected.reason
    assert rejected.received_at <= datetime.now(UTC)
