"""Collection from browser pages and apps over real HTTP: CORS (a preflight for any origin, the
source's allowed origins on the request itself, headers on every answer), the short paths of
analytics.js and the mobile SDKs, text/plain bodies, and the sender's address."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from profiles.models import PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.server import current_database_url, running_server

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"


@pytest.fixture
def server():
    with running_server(
        database_url=current_database_url(), env={"CDPHUB_INGEST_PROCESSING": "off"}
    ) as url:
        yield url


def send(url: str, *, body=b"", method="POST", headers=None) -> tuple[int, dict, dict | None]:
    """Status, headers and JSON answer of one request (an error status is an answer too)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local
            status, answer_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(raw) if raw else None


def page_call(write_key: str, **message) -> bytes:
    """What analytics.js posts: the message with the write key, as text/plain JSON."""
    return json.dumps({"writeKey": write_key, **message}).encode()


def test_a_preflight_is_answered_for_any_origin(server):
    status, headers, _ = send(
        f"{server}/v1/t",
        method="OPTIONS",
        headers={
            "Origin": "https://anywhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://anywhere.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]


def test_a_page_of_an_allowed_origin_sends_a_track_call(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])

    status, headers, answer = send(
        f"{server}/v1/t",
        body=page_call(key, type="track", event="Viewed", anonymousId="a-1"),
        headers={"Origin": SHOP, "Content-Type": "text/plain"},
    )

    assert (status, answer["accepted"]) == (200, 1), answer
    assert headers["Access-Control-Allow-Origin"] == SHOP
    staged = PendingMessage.objects.get(source=source)
    assert staged.payload["event"] == "Viewed"
    # A browser sends no address of its own: the connection's is the sender's.
    assert staged.payload["context"]["ip"] == "127.0.0.1"


def test_a_page_of_another_origin_is_refused_readably_and_nothing_is_kept(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])

    status, headers, answer = send(
        f"{server}/v1/p",
        body=page_call(key, type="page", name="Home", anonymousId="a-1"),
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
    )

    assert status == 403
    assert answer["code"] == "origin_not_allowed"
    assert "https://evil.example" in answer["message"]
    assert headers["Access-Control-Allow-Origin"] == "https://evil.example"  # the page reads why
    assert not PendingMessage.objects.exists() and not RejectedMessage.objects.exists()


def test_a_new_source_takes_no_browser_pages_and_star_takes_any(server):
    _, closed = source_create(name="Backend")
    _, open_key = source_create(name="Blog", allowed_origins=["*"])
    call = {"type": "identify", "userId": "u-1"}
    origin = {"Origin": "https://blog.example", "Content-Type": "text/plain"}

    assert send(f"{server}/v1/i", body=page_call(closed, **call), headers=origin)[0] == 403
    assert send(f"{server}/v1/i", body=page_call(open_key, **call), headers=origin)[0] == 200


def test_servers_and_apps_send_no_origin_and_are_not_affected(server):
    source, key = source_create(name="Backend")  # no allowed origins at all
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    batch = {"batch": [{"type": "track", "event": "Paid", "userId": "u-1"}]}

    for path in ("/v1/batch", "/v1/b", "/b", "/v1/import"):
        status, headers, answer = send(
            f"{server}{path}",
            body=batch | {"batch": [{**batch["batch"][0], "messageId": path}]},
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        assert (status, answer["accepted"]) == (200, 1), (path, answer)
        assert "Access-Control-Allow-Origin" not in headers
    assert PendingMessage.objects.filter(source=source).count() == 4


def test_every_short_path_takes_its_type(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    calls = {
        "t": {"type": "track", "event": "Viewed"},
        "p": {"type": "page", "name": "Home"},
        "i": {"type": "identify", "traits": {"plan": "pro"}},
        "g": {"type": "group", "groupId": "acme"},
        "a": {"type": "alias", "previousId": "a-1"},
        "s": {"type": "screen", "name": "Basket"},
    }
    for short, call in calls.items():
        body = page_call(key, userId="u-1", messageId=f"m-{short}", **call)
        status, _, answer = send(
            f"{server}/v1/{short}",
            body=body,
            headers={"Origin": SHOP, "Content-Type": "text/plain"},
        )
        assert (status, answer["accepted"]) == (200, 1), (short, answer)
    assert sorted(PendingMessage.objects.values_list("type", flat=True)) == sorted(
        call["type"] for call in calls.values()
    )


def test_a_bad_key_from_a_page_is_a_readable_401(server):
    status, headers, answer = send(
        f"{server}/v1/t",
        body=page_call("wk_unknown", type="track", event="E", userId="u"),
        headers={"Origin": SHOP, "Content-Type": "text/plain"},
    )
    assert (status, answer["code"]) == (401, "invalid_write_key")
    assert headers["Access-Control-Allow-Origin"] == SHOP


def test_a_message_that_names_its_address_keeps_it(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    context = {"ip": "203.0.113.9"}
    send(
        f"{server}/v1/t",
        body=page_call(key, type="track", event="E", userId="u", context=context),
        headers={"Origin": SHOP, "Content-Type": "text/plain"},
    )
    assert PendingMessage.objects.get().payload["context"]["ip"] == "203.0.113.9"


def test_analytics_js_reads_its_settings_pointing_at_this_server(server):
    _, key = source_create(name="Shop", allowed_origins=[SHOP])

    status, headers, settings = send(
        f"{server}/v1/projects/{key}/settings", method="GET", headers={"Origin": SHOP}
    )

    assert status == 200
    segment = settings["integrations"]["Segment.io"]
    assert segment["apiKey"] == key
    assert segment["apiHost"] == f"{server.removeprefix('http://')}/v1"
    assert segment["protocol"] == "http"
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert headers["Cache-Control"] == "public, max-age=300"


def test_settings_are_refused_for_an_unknown_or_inactive_key_and_another_origin(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    _, inactive = source_create(name="Old shop", is_active=False, allowed_origins=["*"])

    unknown = send(
        f"{server}/v1/projects/wk_unknown/settings", method="GET", headers={"Origin": SHOP}
    )
    off = send(f"{server}/v1/projects/{inactive}/settings", method="GET", headers={"Origin": SHOP})
    other = send(
        f"{server}/v1/projects/{key}/settings",
        method="GET",
        headers={"Origin": "https://evil.example"},
    )

    assert (unknown[0], unknown[2]["code"]) == (404, "not_found")
    assert unknown[1]["Access-Control-Allow-Origin"] == SHOP
    assert off[0] == 404
    assert (other[0], other[2]["code"]) == (403, "origin_not_allowed")


def test_rudderstacks_sdk_reads_a_valid_source_config(server):
    source, key = source_create(name="Shop", allowed_origins=[SHOP])
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    preflight = send(
        f"{server}/sourceConfig/?p=npm&v=3.0.0",
        method="OPTIONS",
        headers={"Origin": SHOP, "Access-Control-Request-Headers": "authorization"},
    )
    by_header = send(
        f"{server}/sourceConfig/?p=npm&v=3.0.0",
        method="GET",
        headers={"Origin": SHOP, "Authorization": auth},
    )
    by_query = send(f"{server}/sourceConfig/?p=npm&v=3.0.0&writeKey={key}", method="GET")

    assert preflight[0] == 204 and "Authorization" in preflight[1]["Access-Control-Allow-Headers"]
    for status, _, config in (by_header, by_query):
        assert status == 200
        # what the SDK checks before it sends anything
        assert config["source"]["id"] == str(source.pk)
        assert config["source"]["config"] == {} and config["source"]["destinations"] == []
        assert config["source"]["enabled"] is True
    assert by_header[1]["Access-Control-Allow-Origin"] == SHOP


def test_rudderstacks_config_is_refused_for_an_unknown_key_or_another_origin(server):
    _, key = source_create(name="Shop", allowed_origins=[SHOP])

    unknown = send(f"{server}/sourceConfig/?writeKey=wk_unknown", method="GET")
    other = send(
        f"{server}/sourceConfig/?writeKey={key}",
        method="GET",
        headers={"Origin": "https://evil.example"},
    )

    assert (unknown[0], unknown[2]["code"]) == (404, "not_found")
    assert (other[0], other[2]["code"]) == (403, "origin_not_allowed")
