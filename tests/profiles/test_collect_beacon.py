"""Browsers' ``navigator.sendBeacon`` and every kind of bad input.

A beacon carries no header of the page's choosing: the write key is in the body, which is a
string (sent as ``text/plain;charset=UTF-8``, no preflight) or a Blob with its type (a JSON type
is preflighted, and, since beacons are sent with credentials, needs
``Access-Control-Allow-Credentials``). Browsers cap a beacon at 64 KB; a larger body is refused
after reading no more than the limit.

Bad input is refused with ``400 {code, message}`` saying what is wrong, or 401/403 for the key
or the page's origin; a batch mixing good and bad messages keeps the good ones and lists and
keeps the bad ones. Beacons go over real HTTP (gunicorn), the body matrix through Django's test
client as in test_collect.py."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from profiles.models import PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.profiles.test_collect import basic
from tests.profiles.test_collect_browser import send
from tests.profiles.test_collect_mobile import post_raw
from tests.server import current_database_url, running_server

SHOP = "https://shop.example.com"
# What Chrome sends with a beacon from a page of SHOP, besides Host, Content-Length and the
# body's Content-Type: nothing the page chose.
BROWSER = {
    "Origin": SHOP,
    "Referer": f"{SHOP}/checkout",
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "Accept": "*/*",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Dest": "empty",
}
STRING_BODY = "text/plain;charset=UTF-8"


@pytest.fixture(scope="module")
def server(django_db_setup):
    # One server for the module: every test uses keys of its own.
    with running_server(
        database_url=current_database_url(),
        workers=1,
        env={"CDPHUB_INGEST_PROCESSING": "off"},
    ) as url:
        yield url


def beacon(
    server: str, path: str, body: dict, content_type: str = STRING_BODY
) -> tuple[int, dict | str]:
    """What ``navigator.sendBeacon(url, body)`` sends from a page of SHOP: the body as a string
    (``text/plain;charset=UTF-8``) or as a Blob of ``content_type``."""
    no_cors = content_type.startswith("text/plain")
    headers = BROWSER | {
        "Content-Type": content_type,
        "Sec-Fetch-Mode": "no-cors" if no_cors else "cors",
    }
    return post_raw(server, path, json.dumps(body).encode(), headers)


def track(message_id: str) -> dict:
    return {
        "type": "track",
        "event": "Checkout Left",
        "anonymousId": "a-1",
        "messageId": message_id,
    }


def body_for(path: str, key: str | None, message_id: str, **fields) -> dict:
    """A beacon's body for ``path``: one call, or a batch of one; the key in it."""
    message = {**track(message_id), **fields}
    body = message if path == "/v1/t" else {"batch": [message]}
    return ({"writeKey": key} if key else {}) | body


def nothing_kept() -> bool:
    return not PendingMessage.objects.exists() and not RejectedMessage.objects.exists()


# --- Beacons over real HTTP ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/v1/t", "/v1/b", "/v1/batch"])
def test_a_string_beacon_is_accepted(server, path):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    status, answer = beacon(server, path, body_for(path, key, f"beacon{path}"))

    assert (status, answer["accepted"], answer["rejected"]) == (200, 1, []), answer
    staged = PendingMessage.objects.get(source=source)
    assert staged.message_id == f"beacon{path}"
    assert "writeKey" not in staged.payload
    assert staged.payload["context"]["ip"] == "127.0.0.1"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path, blob_type",
    [
        ("/v1/b", "application/json"),
        ("/v1/batch", "application/json"),
        ("/v1/t", "application/json"),
        ("/v1/b", "text/plain"),
    ],
)
def test_a_blob_beacon_with_its_type_is_accepted(server, path, blob_type):
    # navigator.sendBeacon(url, new Blob([JSON.stringify(body)], {type: blob_type}))
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    status, answer = beacon(server, path, body_for(path, key, "blob"), blob_type)

    assert (status, answer["accepted"]) == (200, 1), answer
    assert PendingMessage.objects.get(source=source).message_id == "blob"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/v1/b", "/v1/t"])
def test_a_json_blob_beacon_passes_its_credentialed_preflight(server, path):
    source_create(name="Shop", allowed_origins=[SHOP])

    status, headers, _ = send(
        f"{server}{path}",
        method="OPTIONS",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == SHOP  # the origin, never "*"
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    assert headers.get("Access-Control-Allow-Credentials") == "true"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/v1/t", "/v1/b", "/v1/batch"])
def test_a_beacon_with_no_header_but_its_length_is_accepted(server, path):
    source, key = source_create(name="Kiosk")  # no Origin: not a page, no origin check
    body = json.dumps(body_for(path, key, "bare")).encode()

    status, answer = post_raw(server, path, body, {})

    assert (status, answer["accepted"]) == (200, 1), answer
    assert PendingMessage.objects.get(source=source).message_id == "bare"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path, limit", [("/v1/b", 500 * 1024), ("/v1/t", 32 * 1024)])
def test_a_5_mb_beacon_is_refused_as_too_large(server, path, limit):
    _, key = source_create(name="Shop", allowed_origins=[SHOP])
    body = body_for(path, key, "huge", properties={"filler": "x" * (5 * 1024 * 1024)})

    status, answer = beacon(server, path, body)

    assert status == 400
    assert answer == {
        "code": "payload_too_large",
        "message": f"the body is larger than the limit of {limit} bytes",
    }
    assert nothing_kept()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/v1/b", "/v1/batch"])
def test_a_beacon_from_a_refused_origin_is_403_and_nothing_is_kept(server, path):
    _, key = source_create(name="Shop", allowed_origins=[SHOP])

    status, headers, answer = send(
        f"{server}{path}",
        body=json.dumps(body_for(path, key, "elsewhere")).encode(),
        headers={"Origin": "https://evil.example", "Content-Type": STRING_BODY},
    )

    assert (status, answer["code"]) == (403, "origin_not_allowed")
    assert "https://evil.example" in answer["message"]
    assert headers["Access-Control-Allow-Origin"] == "https://evil.example"
    assert nothing_kept()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key_of", ["a disabled source", "no source", "nobody"])
def test_a_beacon_without_a_valid_key_in_its_body_is_401(server, key_of):
    _, disabled = source_create(name="Old shop", is_active=False, allowed_origins=["*"])
    key = {"a disabled source": disabled, "no source": "wk_unknown", "nobody": None}[key_of]
    status, answer = beacon(server, "/v1/b", body_for("/v1/b", key, "keyless"))

    assert status == 401
    assert answer == {
        "code": "invalid_write_key",
        "message": "missing, unknown or inactive write key",
    }
    assert nothing_kept()


@pytest.mark.django_db(transaction=True)
def test_a_beacon_batch_mixing_good_and_bad_messages_keeps_the_good_ones(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    batch = [
        track("good-0"),
        42,
        {"type": "track", "anonymousId": "a-1", "messageId": "no-event"},
        track("good-3"),
        {"type": "identify", "userId": "undefined", "messageId": "junk-id"},
        {"type": "page", "anonymousId": "a-1", "messageId": "list", "properties": ["x"]},
        track("good-6"),
    ]

    status, answer = beacon(server, "/v1/b", {"writeKey": key, "batch": batch})

    assert status == 200, answer
    assert (answer["accepted"], answer["duplicates"]) == (3, 0)
    assert answer["rejected"] == [
        {"index": 1, "reason": "message 1: a message must be a JSON object"},
        {"index": 2, "reason": "message 2: track needs 'event'"},
        {
            "index": 4,
            "reason": "message 4: userId or anonymousId is required (and must not be a "
            "placeholder)",
        },
        {"index": 5, "reason": "message 5: 'properties' must be a JSON object"},
    ]
    staged = PendingMessage.objects.filter(source=source)
    assert sorted(staged.values_list("message_id", flat=True)) == ["good-0", "good-3", "good-6"]
    kept = {r.reason.split(":")[0]: r for r in RejectedMessage.objects.filter(source=source)}
    assert sorted(kept) == ["message 1", "message 2", "message 4", "message 5"]
    assert kept["message 1"].payload == {"value": 42}
    assert kept["message 2"].message_id == "no-event"
    assert kept["message 5"].payload["properties"] == ["x"]
    assert {r.status for r in kept.values()} == {RejectedMessage.Status.REJECTED}


@pytest.mark.django_db(transaction=True)
def test_a_bad_single_call_beacon_is_400_and_kept(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])

    status, answer = beacon(server, "/v1/t", {"writeKey": key, "anonymousId": "a-1"})

    assert (status, answer) == (400, {"code": "invalid_message", "message": "track needs 'event'"})
    assert not PendingMessage.objects.exists()
    assert RejectedMessage.objects.get(source=source).reason == "track needs 'event'"


# --- Bodies of every kind, through the test client -----------------------------------------------


def post_body(
    client,
    path: str,
    data: bytes,
    *,
    content_type: str = "application/json",
    key: str | None = None,
    gzipped: bool = False,
    **extra,
):
    if gzipped:
        data = gzip.compress(data)
        extra["HTTP_CONTENT_ENCODING"] = "gzip"
    if key:
        extra["HTTP_AUTHORIZATION"] = basic(key)
    return client.post(path, data=data, content_type=content_type, **extra)


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize(
    "content_type, gzipped",
    [
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        ("application/json; charset=UTF-8", False),
        ("text/plain", False),
        ("text/plain;charset=UTF-8", False),
        ("", False),
        ("text/plain", True),  # analytics-kotlin
        ("application/json", True),  # the Python SDKs, RudderStack
    ],
)
@pytest.mark.parametrize("path", ["/v1/batch", "/b", "/v1/t"])
def test_every_content_type_the_sdks_send_is_accepted(client, source, path, content_type, gzipped):
    _, key = source
    data = json.dumps(body_for(path, key, "typed")).encode()

    response = post_body(client, path, data, content_type=content_type, gzipped=gzipped)

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert PendingMessage.objects.get().message_id == "typed"


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize("data", [b"", b"  \r\n", gzip.compress(b"")], ids=["empty", "blank", "gz"])
@pytest.mark.parametrize("with_key", [True, False], ids=["key-header", "no-key"])
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/t"])
def test_an_empty_body_is_400_invalid_json(client, source, path, with_key, data):
    _, key = source
    extra = {"HTTP_CONTENT_ENCODING": "gzip"} if data[:2] == b"\x1f\x8b" else {}

    response = post_body(
        client, path, data, content_type=STRING_BODY, key=key if with_key else None, **extra
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["message"].startswith("the body is not valid JSON: ")
    assert nothing_kept()


NOT_AN_OBJECT = {
    "empty array": b"[]",
    "array of messages": b'[{"type": "track", "event": "E", "userId": "u"}]',
    "string": b'"track"',
    "number": b"42",
    "null": b"null",
    "boolean": b"true",
}


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize("data", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/t", "/v1/track"])
def test_a_json_body_that_is_not_an_object_is_400(client, source, path, data):
    _, key = source

    response = post_body(client, path, data, key=key)

    assert response.status_code == 400
    assert response.json() == {"code": "invalid_body", "message": "the body must be a JSON object"}
    assert nothing_kept()


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize("data", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_a_beacon_body_that_is_not_an_object_is_400_too(client, source, data):
    response = post_body(client, "/v1/b", data, content_type=STRING_BODY)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize(
    "batch",
    [{}, {"batch": None}, {"batch": "[]"}, {"batch": 3}, {"batch": True}],
    ids=["missing", "null", "string", "number", "boolean"],
)
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/b", "/v1/import"])
def test_a_batch_that_is_not_a_list_is_400(client, source, path, batch):
    _, key = source

    response = post_body(client, path, json.dumps({"writeKey": key, **batch}).encode())

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_batch",
        "message": "'batch' must be a list of messages",
    }
    assert nothing_kept()


class CountingBody(io.BytesIO):
    """A request body that counts the bytes the server reads of it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readline(self, size: int | None = -1, /) -> bytes:
        line = super().readline(size)
        self.bytes_read += len(line)
        return line


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize(
    "path, limit_setting",
    [
        ("/v1/b", "CDPHUB_INGEST_MAX_BATCH_BYTES"),
        ("/v1/batch", "CDPHUB_INGEST_MAX_BATCH_BYTES"),
        ("/v1/t", "CDPHUB_INGEST_MAX_MESSAGE_BYTES"),
    ],
)
def test_a_too_large_body_is_refused_after_reading_at_most_the_limit(
    client, source, settings, path, limit_setting
):
    _, key = source
    limit = getattr(settings, limit_setting)
    filler = {"filler": "x" * (5 * 1024 * 1024)}
    data = json.dumps(body_for(path, key, "huge", properties=filler)).encode()
    body = CountingBody(data)

    response = client.post(
        path,
        data=data,
        content_type=STRING_BODY,
        **{"wsgi.input": body, "CONTENT_LENGTH": str(len(data))},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert str(limit) in response.json()["message"]
    # Read up to one byte past the limit, never the whole body into memory.
    assert body.bytes_read <= limit + 1
    assert nothing_kept()


@pytest.mark.django_db
@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize("path", ["/v1/batch", "/b", "/v1/t"])
def test_a_gzip_body_inflating_past_the_limit_is_refused(client, source, path):
    # 5 MB of JSON, a few KB on the wire: refused while inflating, not after.
    _, key = source
    filler = {"filler": " " * (5 * 1024 * 1024)}
    data = json.dumps(body_for(path, key, "bomb", properties=filler)).encode()

    response = post_body(client, path, data, gzipped=True)

    assert len(gzip.compress(data)) < 20_000
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert nothing_kept()
