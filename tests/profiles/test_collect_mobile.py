"""The requests of the mobile and Java SDKs, shaped as their sources build them (path,
headers, body envelope, each message with the context the SDK adds), against a real cdphub
server: Segment's analytics-kotlin and analytics-swift (batches to ``<apiHost>/b``, the write key
in the body), Segment's analytics-java (batches to ``/v1/import/`` with the write key as HTTP
Basic user name) and RudderStack's Android SDK (``/v1/batch``). Each shape names the SDK source
file it comes from; the SDKs cannot run here, so their requests are replayed."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.server import current_database_url, running_server

pytestmark = pytest.mark.django_db(transaction=True)

KOTLIN_VERSION = "1.24.1"
SWIFT_VERSION = "1.9.4"
JAVA_VERSION = "3.5.4"
RUDDER_ANDROID_VERSION = "1.25.1"


@pytest.fixture(scope="module")
def server(django_db_setup):
    # One server for the module: every test uses keys of its own, so nothing leaks between
    # tests, and the machine is spared a gunicorn start per test. Processing is left to the test.
    with running_server(
        database_url=current_database_url(),
        workers=1,
        env={"CDPHUB_INGEST_PROCESSING": "off"},
    ) as url:
        yield url


def post_raw(
    server: str, path: str, body: bytes, headers: dict[str, str], *, chunked: bool = False
) -> tuple[int, dict | str]:
    """One POST with exactly ``headers`` (plus Host, and Content-Length or, ``chunked``, the
    body in chunks as a streaming HTTP client sends it); the status and the answer (JSON, or
    the text of another answer)."""
    address = urlsplit(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for start in range(0, len(body), 4096):
                chunk = body[start : start + 4096]
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        else:
            connection.putheader("Content-Length", str(len(body)))
            # A server may answer before reading all of a body too large for it, and close:
            # its answer is read then, as curl and browsers read it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.endheaders(body)
        response = connection.getresponse()
        raw = response.read()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(raw)
        return response.status, raw.decode(errors="replace")
    finally:
        connection.close()


def basic(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def sdk_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as every one of these SDKs writes its times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- Segment analytics-kotlin (Android) --------------------------------------------------------
#
# segmentio/analytics-kotlin:
# - core/src/main/java/com/segment/analytics/kotlin/core/HTTPClient.kt (RequestFactory.upload):
#   POST https://<apiHost>/b, Content-Type: text/plain, Content-Encoding: gzip,
#   User-Agent: analytics-kotlin/<version>, no Authorization header since 1.10 (the write key
#   moved into the body); up to 1.22 through HttpURLConnection in chunked streaming mode, from
#   1.23 through OkHttp with the body buffered (Content-Length). X-Retry-Count on a retry
#   (core/.../platform/EventPipeline.kt).
# - core/src/main/java/com/segment/analytics/kotlin/core/utilities/StorageImpl.kt: the file is
#   the body, {"batch":[<event>,<event>],"sentAt":"...","writeKey":"..."}.
# - core/src/main/java/com/segment/analytics/kotlin/core/Events.kt: the event fields; a blank
#   userId and empty traits are left out (EventPipeline.stringifyBaseEvent).
# - core/.../platform/plugins/ContextPlugin.kt (library, instanceId) and
#   android/src/main/java/com/segment/analytics/kotlin/android/plugins/AndroidContextPlugin.kt
#   (app, device, os, screen, network, locale, userAgent, timezone).


def kotlin_context(instance_id: str, device_id: str) -> dict:
    return {
        "library": {"name": "analytics-kotlin", "version": KOTLIN_VERSION},
        "instanceId": instance_id,
        "app": {
            "name": "Shop",
            "version": "4.2.0",
            "namespace": "com.example.shop",
            "build": "4200",
        },
        "device": {
            "id": device_id,
            "manufacturer": "Google",
            "model": "Pixel 8",
            "name": "shiba",
            "type": "android",
        },
        "os": {"name": "Android", "version": "14"},
        "screen": {"density": 2.625, "height": 2400, "width": 1080},
        "network": {"wifi": True, "bluetooth": False, "cellular": False},
        "locale": "nl-NL",
        "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
        "timezone": "Europe/Amsterdam",
    }


def kotlin_batch(write_key: str, user_id: str, anonymous_id: str, device_id: str) -> bytes:
    """The uncompressed body of one analytics-kotlin upload: identify, track, screen, group,
    alias, as the app's calls leave them in the event file."""
    now = datetime.now(UTC)
    context = kotlin_context(str(uuid.uuid4()), device_id)
    base = {"anonymousId": anonymous_id, "integrations": {}, "context": context}
    metadata = {"_metadata": {"bundled": [], "unbundled": [], "bundledIds": []}}

    def event(fields: dict, seconds_ago: int, user: str | None = user_id) -> str:
        message = {
            **fields,
            "messageId": str(uuid.uuid4()),
            **base,
            **({"userId": user} if user else {}),
            "timestamp": sdk_time(now - timedelta(seconds=seconds_ago)),
            **metadata,
        }
        return compact(message)

    events = [
        # Before sign-in: no userId (a blank one is left out), no traits.
        event({"properties": {"items": 2}, "event": "Basket Viewed", "type": "track"}, 50, None),
        event(
            {
                "userId": user_id,
                "traits": {"email": "Anna.Kotlin@Example.com", "name": "Anna"},
                "type": "identify",
            },
            40,
        ),
        event(
            {
                "properties": {"revenue": 42.5, "currency": "EUR"},
                "event": "Order Completed",
                "type": "track",
            },
            30,
        ),
        event(
            {
                "name": "Basket",
                "category": "Checkout",
                "properties": {"items": 2},
                "type": "screen",
            },
            20,
        ),
        event({"groupId": "acme", "traits": {"name": "Acme"}, "type": "group"}, 10),
        event({"userId": user_id, "previousId": anonymous_id, "type": "alias"}, 5),
    ]
    # StorageImpl: begin, events joined by commas, end (sentAt when the file was closed).
    return (
        '{"batch":[' + ",".join(events) + f'],"sentAt":"{sdk_time(now)}","writeKey":"{write_key}"}}'
    ).encode()


def kotlin_headers(*, buffered: bool) -> dict[str, str]:
    headers = {
        "User-Agent": f"analytics-kotlin/{KOTLIN_VERSION}",
        "Content-Type": "text/plain",
        "Content-Encoding": "gzip",
    }
    if buffered:  # OkHttp (1.23+)
        headers |= {"Connection": "Keep-Alive", "Accept-Encoding": "gzip"}
    return headers


# --- Segment analytics-swift (iOS, macOS, tvOS, watchOS) ---------------------------------------
#
# segmentio/analytics-swift:
# - Sources/Segment/Utilities/Networking/HTTPClient.swift (startBatchUpload, configuredRequest):
#   POST https://<apiHost>/b, Content-Type: application/json; charset=utf-8,
#   User-Agent: analytics-ios/<version>, Accept-Encoding: gzip, no Authorization header, the
#   body uploaded from the batch file uncompressed (URLSession sets Content-Length).
# - Sources/Segment/Utilities/Storage/Types/DirectoryStore.swift: the file, one line per event:
#   '{ "batch": [' / event / ',' + event ... / '],"sentAt":"...","writeKey":"..."}'.
# - Sources/Segment/Types.swift: the event fields (nil ones left out); UUIDs upper case.
# - Sources/Segment/Plugins/Context.swift: library, app, device, os, screen, locale, timezone,
#   network, userAgent, instanceId. JSONEncoder writes "/" as "\/".


def swift_context(instance_id: str, device_id: str) -> dict:
    return {
        "library": {"name": "analytics-swift", "version": SWIFT_VERSION},
        "app": {
            "name": "Shop",
            "version": "4.2.0",
            "build": "4200",
            "namespace": "com.example.shop",
        },
        "device": {
            "manufacturer": "Apple",
            "type": "ios",
            "model": "iPhone16,1",
            "name": "iPhone",
            "id": device_id,
        },
        "os": {"name": "iOS", "version": "17.5.1"},
        "screen": {"width": 393, "height": 852},
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
        "network": {"bluetooth": False, "cellular": True, "wifi": False},
        "userAgent": (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148"
        ),
        "instanceId": instance_id,
    }


def swift_batch(write_key: str, user_id: str, anonymous_id: str, device_id: str) -> bytes:
    now = datetime.now(UTC)
    context = swift_context(str(uuid.uuid4()).upper(), device_id)

    def event(fields: dict, seconds_ago: int, user: str | None = user_id) -> str:
        message = {
            "type": fields.pop("type"),
            "anonymousId": anonymous_id,
            "messageId": str(uuid.uuid4()).upper(),
            **({"userId": user} if user else {}),
            "timestamp": sdk_time(now - timedelta(seconds=seconds_ago)),
            "context": context,
            "integrations": {},
            "_metadata": {"bundled": [], "unbundled": [], "bundledIds": []},
            **fields,
        }
        return compact(message).replace("/", "\\/")

    events = [
        event(
            {
                "type": "track",
                "event": "Application Opened",
                "properties": {"from_background": False, "version": "4.2.0", "build": "4200"},
            },
            50,
            None,
        ),
        event({"type": "identify", "traits": {"email": "anna.swift@example.com"}}, 40),
        event({"type": "track", "event": "Order Completed", "properties": {"revenue": 19.99}}, 30),
        event(
            {
                "type": "screen",
                "name": "Basket",
                "category": "Checkout",
                "properties": {"items": 1},
            },
            20,
        ),
        event({"type": "group", "groupId": "acme", "traits": {"plan": "pro"}}, 10),
        event({"type": "alias", "previousId": anonymous_id}, 5),
    ]
    lines = ['{ "batch": [', events[0], *("," + line for line in events[1:])]
    lines.append(f'],"sentAt":"{sdk_time(now)}","writeKey":"{write_key}"}}')
    return ("\n".join(lines) + "\n").encode()


SWIFT_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "User-Agent": f"analytics-ios/{SWIFT_VERSION}",
    "Accept-Encoding": "gzip",
    "Accept": "*/*",
    "Accept-Language": "nl-NL,nl;q=0.9",
    "Connection": "keep-alive",
}


# --- Segment analytics-java ---------------------------------------------------------------------
#
# segmentio/analytics-java:
# - analytics/src/main/java/com/segment/analytics/Analytics.java (Builder): the upload URL is
#   endpoint + "/v1/import/" (DEFAULT_PATH, trailing slash included), or setUploadURL(...) as
#   given; User-Agent analytics-java/<version>.
# - analytics/src/main/java/com/segment/analytics/AnalyticsRequestInterceptor.java:
#   Authorization: Basic base64(writeKey:) (okhttp3.Credentials.basic), User-Agent,
#   X-Retry-Count on a retry.
# - analytics-core/src/main/java/com/segment/analytics/http/SegmentService.java: POST of the
#   Batch through Retrofit's Gson converter (Content-Type: application/json; charset=UTF-8).
# - analytics-core/src/main/java/com/segment/analytics/messages/Batch.java:
#   {"batch":[...],"sentAt":"...","context":{library, instanceId},"sequence":n,"writeKey":"..."};
#   the batch context (analytics/.../internal/AnalyticsClient.java) is the only context a
#   server-side message has unless the caller sets one.
# - analytics-core/src/main/java/com/segment/analytics/messages/*Message.java and
#   MessageBuilder.java: type, messageId, timestamp, userId/anonymousId, integrations {} and the
#   type's fields; Gson leaves out nulls.
# - analytics-sample/src/main/java/sample/GzipRequestInterceptor.java: the documented way to
#   gzip the uploads, Content-Encoding: gzip with the body streamed in chunks.


def java_batch(write_key: str, user_id: str) -> bytes:
    now = datetime.now(UTC)

    def message(fields: dict, seconds_ago: int) -> dict:
        return {
            "type": fields.pop("type"),
            "messageId": str(uuid.uuid4()),
            "timestamp": sdk_time(now - timedelta(seconds=seconds_ago)),
            "userId": user_id,
            "integrations": {},
            **fields,
        }

    batch = {
        "batch": [
            message(
                {
                    "type": "identify",
                    "traits": {"email": "anna.java@example.com", "plan": "enterprise"},
                },
                50,
            ),
            message({"type": "track", "event": "Invoice Paid", "properties": {"amount": 1200}}, 40),
            message(
                {
                    "type": "page",
                    "name": "Jackets",
                    "properties": {"url": "https://shop.example.com/jackets"},
                    "category": "Shop",
                },
                30,
            ),
            message({"type": "screen", "name": "Basket", "properties": {"items": 3}}, 20),
            message({"type": "group", "groupId": "acme", "traits": {"employees": 120}}, 10),
            message({"type": "alias", "previousId": "legacy-42"}, 5),
        ],
        "sentAt": sdk_time(now),
        "context": {
            "library": {"name": "analytics-java", "version": JAVA_VERSION},
            "instanceId": str(uuid.uuid4()),
        },
        "sequence": 1,
        "writeKey": write_key,
    }
    return compact(batch).encode()


def java_headers(write_key: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=UTF-8",
        "Connection": "Keep-Alive",
        "Accept-Encoding": "gzip",
        "Authorization": basic(write_key),
        "User-Agent": f"analytics-java/{JAVA_VERSION}",
    }


# --- RudderStack Android (v1 SDK) ---------------------------------------------------------------
#
# rudderlabs/rudder-sdk-android:
# - core/src/main/java/com/rudderstack/android/sdk/core/RudderNetworkManager.java: POST
#   <dataPlaneUrl>/v1/batch, Authorization: Basic base64(writeKey:), Content-Type:
#   application/json, AnonymousId: base64(anonymousId).
# - core/src/main/java/com/rudderstack/android/sdk/core/FlushUtils.java
#   (getPayloadFromMessages): {"sentAt":"...","batch": [<message + "sentAt">, ...]}.
# - core/src/main/java/com/rudderstack/android/sdk/core/RudderMessage.java and
#   RudderContext.java: messageId "<millis>-<uuid>", channel "mobile", originalTimestamp, the
#   user's traits (email, id) in context.traits, not at the root.


def rudder_android_batch(user_id: str, anonymous_id: str) -> bytes:
    now = datetime.now(UTC)
    sent_at = sdk_time(now)
    context = {
        "app": {
            "build": "4200",
            "name": "Shop",
            "namespace": "com.example.shop",
            "version": "4.2.0",
        },
        "traits": {"anonymousId": anonymous_id, "id": user_id, "email": "anna.rudder@example.com"},
        "library": {"name": "com.rudderstack.android.sdk.core", "version": RUDDER_ANDROID_VERSION},
        "os": {"name": "Android", "version": "14"},
        "screen": {"density": 420, "width": 1080, "height": 2400},
        "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
        "locale": "nl-NL",
        "device": {
            "id": "8f14e45fceea167a",
            "manufacturer": "Google",
            "model": "Pixel 8",
            "name": "shiba",
            "type": "Android",
            "adTrackingEnabled": False,
        },
        "network": {"carrier": "KPN", "wifi": True, "bluetooth": False, "cellular": True},
        "timezone": "Europe/Amsterdam",
        "sessionId": int(now.timestamp()),
        "sessionStart": True,
    }

    def message(fields: dict, seconds_ago: int) -> str:
        millis = int((now - timedelta(seconds=seconds_ago)).timestamp() * 1000)
        body = {
            "messageId": f"{millis}-{uuid.uuid4()}",
            "channel": "mobile",
            "context": context,
            "type": fields.pop("type"),
            "originalTimestamp": sdk_time(now - timedelta(seconds=seconds_ago)),
            "anonymousId": anonymous_id,
            "userId": user_id,
            **fields,
            "integrations": {"All": True},
        }
        # FlushUtils strips the closing brace and appends sentAt to each stored message.
        return compact(body)[:-1] + f',"sentAt":"{sent_at}"}}'

    messages = [
        message({"type": "identify", "event": "identify"}, 30),
        message({"type": "track", "event": "Order Completed", "properties": {"revenue": 7.5}}, 20),
        message(
            {
                "type": "screen",
                "event": "Basket",
                "properties": {"name": "Basket", "automatic": False},
            },
            10,
        ),
    ]
    return ('{"sentAt":"' + sent_at + '","batch": [' + ",".join(messages) + "]}").encode()


# --- What every SDK relies on --------------------------------------------------------------------


def assert_stored(answer: dict | str, count: int, duplicates: int = 0) -> None:
    assert isinstance(answer, dict), answer
    stored = {key: answer.get(key) for key in ("success", "accepted", "duplicates", "rejected")}
    assert stored == {"success": True, "accepted": count, "duplicates": duplicates, "rejected": []}


def assert_one_profile(source, expected: set[tuple[str, str]], types: list[str]) -> list[Event]:
    """Processing makes one event per message, all on the one profile that holds ``expected``
    identities; returns the events."""
    assert not RejectedMessage.objects.exists()
    assert pending_process() == len(types)
    events = list(Event.objects.filter(source=source).order_by("timestamp"))
    assert [event.type for event in events] == types
    profile_ids = {event.profile_id for event in events}
    assert len(profile_ids) == 1
    identities = set(
        Identity.objects.filter(profile_id__in=profile_ids).values_list("kind", "value")
    )
    assert identities >= expected, identities
    return events


def test_analytics_kotlin_gzipped_text_plain_upload_is_stored_and_processed(server):
    source, key = source_create(name="Android app")
    anonymous_id, device_id = str(uuid.uuid4()), "3f" * 32
    body = kotlin_batch(key, "user-kt", anonymous_id, device_id)

    status, answer = post_raw(server, "/b", gzip.compress(body), kotlin_headers(buffered=True))

    assert status == 200, answer
    assert_stored(answer, 6)
    staged = PendingMessage.objects.filter(source=source)
    assert all("writeKey" not in message.payload for message in staged)
    events = assert_one_profile(
        source,
        {
            ("user_id", "user-kt"),
            ("anonymous_id", anonymous_id),
            ("email", "anna.kotlin@example.com"),
            ("device_id", device_id),
        },
        ["track", "identify", "track", "screen", "group", "alias"],
    )
    basket, identify, order, screen, group, _ = events
    # Sent before sign-in: the event keeps no user id, yet joins the profile by its anonymous id.
    assert (basket.name, basket.user_id, basket.anonymous_id) == ("Basket Viewed", "", anonymous_id)
    assert identify.properties == {"email": "Anna.Kotlin@Example.com", "name": "Anna"}
    assert order.properties == {"revenue": 42.5, "currency": "EUR"}
    assert (screen.name, screen.properties) == ("Basket", {"items": 2, "category": "Checkout"})
    assert group.name == "acme"
    # The context the SDK built is kept on the event, the sender's address added to it.
    assert order.context["library"] == {"name": "analytics-kotlin", "version": KOTLIN_VERSION}
    assert order.context["device"]["id"] == device_id
    assert order.context["ip"] == "127.0.0.1"
    assert all(event.sent_at is not None and event.original_timestamp for event in events)


def test_a_retried_kotlin_upload_is_stored_once(server):
    source, key = source_create(name="Android app")
    body = gzip.compress(kotlin_batch(key, "user-kt", str(uuid.uuid4()), "ab" * 32))

    first = post_raw(server, "/b", body, kotlin_headers(buffered=True))
    # The SDK resends the same file after a timeout, counting its attempts.
    retry = post_raw(server, "/b", body, kotlin_headers(buffered=True) | {"X-Retry-Count": "1"})

    assert first[0] == retry[0] == 200
    assert_stored(first[1], 6)
    assert_stored(retry[1], 0, duplicates=6)
    assert PendingMessage.objects.filter(source=source).count() == 6


def test_kotlin_with_gzip_turned_off_sends_plain_text(server):
    # A RequestFactory without Content-Encoding (HTTPClient.kt, "make gzip optional").
    source, key = source_create(name="Android app")
    headers = kotlin_headers(buffered=True)
    del headers["Content-Encoding"]

    status, answer = post_raw(
        server, "/b", kotlin_batch(key, "user-kt", str(uuid.uuid4()), "cd" * 32), headers
    )

    assert status == 200
    assert_stored(answer, 6)


@pytest.mark.parametrize("sdk", ["analytics-kotlin <= 1.22", "analytics-java gzip interceptor"])
def test_a_streamed_chunked_upload_is_stored(server, sdk):
    source, key = source_create(name="Streaming app")
    if sdk.startswith("analytics-kotlin"):
        # HttpURLConnection with setChunkedStreamingMode(0), gzip on the fly.
        path, headers = "/b", kotlin_headers(buffered=False)
        body = gzip.compress(kotlin_batch(key, "user-kt", str(uuid.uuid4()), "ef" * 32))
    else:
        # OkHttp with the sample's GzipRequestInterceptor: contentLength() is -1.
        path, headers = "/v1/import", java_headers(key) | {"Content-Encoding": "gzip"}
        body = gzip.compress(java_batch(key, "user-java"))

    status, answer = post_raw(server, path, body, headers, chunked=True)

    assert status == 200, answer
    assert_stored(answer, 6)
    assert PendingMessage.objects.filter(source=source).count() == 6


def test_analytics_swift_upload_is_stored_and_processed(server):
    source, key = source_create(name="iOS app")
    anonymous_id, device_id = str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper()
    body = swift_batch(key, "user-swift", anonymous_id, device_id)
    assert b"Europe\\/Amsterdam" in body  # the JSONEncoder's escaped slashes

    status, answer = post_raw(server, "/b", body, SWIFT_HEADERS)

    assert status == 200, answer
    assert_stored(answer, 6)
    events = assert_one_profile(
        source,
        {
            ("user_id", "user-swift"),
            ("anonymous_id", anonymous_id),
            ("email", "anna.swift@example.com"),
            ("device_id", device_id),
        },
        ["track", "identify", "track", "screen", "group", "alias"],
    )
    opened, _, order, screen, _, _ = events
    assert opened.name == "Application Opened"
    assert opened.properties["from_background"] is False
    assert order.properties == {"revenue": 19.99}
    assert (screen.name, screen.properties) == ("Basket", {"items": 1, "category": "Checkout"})
    assert order.context["timezone"] == "Europe/Amsterdam"
    assert order.context["library"] == {"name": "analytics-swift", "version": SWIFT_VERSION}


def test_analytics_java_upload_to_its_upload_url_is_stored_and_processed(server):
    # Analytics.builder(key).setUploadURL("https://<cdphub host>/v1/import")
    source, key = source_create(name="Billing service")

    status, answer = post_raw(server, "/v1/import", java_batch(key, "user-java"), java_headers(key))

    assert status == 200, answer
    assert_stored(answer, 6)
    events = assert_one_profile(
        source,
        {("user_id", "user-java"), ("email", "anna.java@example.com")},
        ["identify", "track", "page", "screen", "group", "alias"],
    )
    _, invoice, page, screen, group, _ = events
    assert invoice.properties == {"amount": 1200}
    assert (page.name, page.properties["category"]) == ("Jackets", "Shop")
    assert screen.properties == {"items": 3}
    assert group.properties == {"employees": 120}
    # The batch's context (library, instanceId) is each message's context.
    assert invoice.context["library"] == {"name": "analytics-java", "version": JAVA_VERSION}
    assert "instanceId" in invoice.context


def test_analytics_java_gzipped_upload_with_a_length_is_stored(server):
    source, key = source_create(name="Billing service")
    headers = java_headers(key) | {"Content-Encoding": "gzip"}

    status, answer = post_raw(
        server, "/v1/import", gzip.compress(java_batch(key, "user-java")), headers
    )

    assert status == 200, answer
    assert_stored(answer, 6)


def test_analytics_java_upload_to_its_default_path_is_stored(server):
    # Analytics.builder(key).endpoint("https://<cdphub host>")
    source, key = source_create(name="Billing service")

    status, answer = post_raw(
        server, "/v1/import/", java_batch(key, "user-java"), java_headers(key)
    )

    assert status == 200, answer
    assert_stored(answer, 6)


def test_analytics_java_with_a_wrong_key_gets_a_401_it_will_not_retry(server):
    source_create(name="Billing service")

    status, answer = post_raw(
        server, "/v1/import", java_batch("wk_wrong", "user-java"), java_headers("wk_wrong")
    )

    # 4xx other than 429: the SDK drops the batch rather than retrying it for ever.
    assert (status, answer["code"]) == (401, "invalid_write_key")
    assert not PendingMessage.objects.exists()


def test_rudderstack_android_batch_is_stored_and_processed(server):
    source, key = source_create(name="Android app (RudderStack)")
    anonymous_id = str(uuid.uuid4())
    headers = {
        "Authorization": basic(key),
        "Content-Type": "application/json",
        "AnonymousId": base64.b64encode(anonymous_id.encode()).decode(),
        "User-Agent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
    }

    status, answer = post_raw(
        server, "/v1/batch", rudder_android_batch("user-rudder", anonymous_id), headers
    )

    assert status == 200, answer
    assert_stored(answer, 3)
    identify, order, screen = assert_one_profile(
        source,
        {
            ("user_id", "user-rudder"),
            ("anonymous_id", anonymous_id),
            ("email", "anna.rudder@example.com"),
            ("device_id", "8f14e45fceea167a"),
        },
        ["identify", "track", "screen"],
    )
    # RudderStack sends the user's traits in context.traits.
    assert identify.properties["email"] == "anna.rudder@example.com"
    assert order.properties == {"revenue": 7.5}
    assert screen.name == "Basket"
