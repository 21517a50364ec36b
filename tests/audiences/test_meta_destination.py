"""A segment synced to a Meta Custom Audience, against a local fake of the Marketing API that
checks each request's shape as Meta does (token, schema, SHA-256 hex values, at most 10,000
rows) and answers like it: the members added and removed, a rate limit (400, code 80003), an
expired token (400, code 190). The erasure's removal reaches it too."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from audiences.hashing import sha256_hex
from cdphub.delivery import deliveries_send
from cdphub.models import Delivery
from consent.dsar import dsar_create, dsar_process, dsar_verify
from profiles.destinations.kinds import config_shown
from profiles.destinations.services import destination_create
from profiles.services import source_create
from tests.audience_sync import gold_segment, identify

pytestmark = pytest.mark.django_db

TOKEN = "EAAB-test-token"
AUDIENCE = "23851234567890"
HEX64 = re.compile(r"[0-9a-f]{64}")
MADID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class FakeMeta:
    """POST/DELETE /<version>/<audience>/users as the Marketing API takes them; ``errors``:
    answers to give first, as (status, error object)."""

    def __init__(self, *errors: tuple[int, dict]) -> None:
        self.errors = list(errors)
        self.members: set[tuple[str, ...]] = set()
        self.requests: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.answer("POST")

            def do_DELETE(self):  # noqa: N802
                self.answer("DELETE")

            def answer(self, method):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((method, body))
                status, answer = fake.handle(method, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        if path != f"/v19.0/{AUDIENCE}/users":
            return 404, {"error": {"message": "Unknown path", "code": 803}}
        if body.get("access_token") != TOKEN:
            return 400, {"error": {"message": "Invalid OAuth access token.", "code": 190}}
        if self.errors:
            status, error = self.errors.pop(0)
            return status, {"error": error}
        payload = body.get("payload") or {}
        schema, data = payload.get("schema"), payload.get("data")
        if schema not in (["EMAIL_SHA256", "PHONE_SHA256"], ["MADID"]) or not isinstance(
            data, list
        ):
            return 400, {"error": {"message": "Invalid schema", "code": 100}}
        if not 0 < len(data) <= 10_000:
            return 400, {"error": {"message": "Between 1 and 10000 rows", "code": 100}}
        for row in data:
            if schema == ["MADID"]:  # advertising ids as they are, lower-cased
                if len(row) != 1 or not MADID.fullmatch(row[0]):
                    return 400, {"error": {"message": f"Not an advertising id: {row}", "code": 100}}
            elif len(row) != 2 or not all(v == "" or HEX64.fullmatch(v) for v in row):
                return 400, {"error": {"message": f"Not hashed: {row}", "code": 100}}
        rows = {tuple(row) for row in data}
        if method == "POST":
            self.members |= rows
        else:
            self.members -= rows
        return 200, {"audience_id": AUDIENCE, "num_received": len(data), "num_invalid_entries": 0}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeMeta()
    yield server
    server.close()


@pytest.fixture
def source(delivery_engine):
    delivery_engine.CDPHUB_MIN_AUDIENCE_SIZE = 2
    return source_create(name="Web shop")[0]


@pytest.fixture
def gold(source):
    # Addresses spelt as people type them: hashed as Meta normalises them.
    phones = {"u-1": "+31612345671", "u-2": "+31612345672", "u-3": None}
    return gold_segment(source, "advertising", phones, email=spelt)


def spelt(user: str) -> str:
    return f" {user.upper()}@Example.com "


def meta(fake, segment, token=TOKEN):
    return destination_create(
        name="Meta audience",
        kind="meta_custom_audience",
        config={"audience_id": AUDIENCE, "access_token": token, "api_url": fake.url},
        purpose_code="advertising",
        segment=segment,
    )[0]


def email_hash(user: str) -> str:
    return sha256_hex(f"{user}@example.com")


def test_the_audience_follows_the_segment_hashed_as_meta_matches(
    fake, source, gold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        meta(fake, gold)
    deliveries_send()
    assert fake.members == {
        (email_hash("u-1"), sha256_hex("31612345671")),  # Meta's phone: digits, no "+"
        (email_hash("u-2"), sha256_hex("31612345672")),
        (email_hash("u-3"), ""),
    }

    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-2", "silver", 1)
    deliveries_send()
    method, body = fake.requests[-1]
    assert method == "DELETE"
    assert body["payload"]["data"] == [[email_hash("u-2"), sha256_hex("31612345672")]]
    assert (email_hash("u-2"), sha256_hex("31612345672")) not in fake.members


def test_a_rate_limit_is_retried_and_an_expired_token_is_a_dead_letter(
    fake, gold, django_capture_on_commit_callbacks
):
    fake.errors = [(400, {"message": "User request limit reached", "code": 80003})]
    with django_capture_on_commit_callbacks(execute=True):
        meta(fake, gold)
    deliveries_send()  # the limit, then the retry (due at once here)
    assert len(fake.members) == 3
    assert [method for method, _ in fake.requests] == ["POST", "POST"]

    fake.requests.clear()
    with django_capture_on_commit_callbacks(execute=True):
        expired = destination_create(
            name="Meta, old token",
            kind="meta_custom_audience",
            config={"audience_id": AUDIENCE, "access_token": "expired", "api_url": fake.url},
            purpose_code="advertising",
            segment=gold,
        )[0]
    deliveries_send()
    dead = Delivery.objects.filter(destination=expired, status="dead")
    assert dead.count() == 3
    assert "Invalid OAuth access token. (code 190)" in dead.first().last_error


def test_an_erasure_removes_the_person_from_the_audience(
    fake, gold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        destination = meta(fake, gold)
    deliveries_send()
    request = dsar_create(kind="erasure", user_id="u-1")
    dsar_verify(request=request)
    dsar_process(request=request)
    deliveries_send()

    method, body = fake.requests[-1]
    assert method == "DELETE"
    # Every spelling of the address the person used, hashed as Meta matches: one row.
    assert body["payload"]["data"] == [[email_hash("u-1"), sha256_hex("31612345671")]]
    assert (email_hash("u-1"), sha256_hex("31612345671")) not in fake.members
    answers = request.actions.filter(action="destination_answer").values_list("note", flat=True)
    assert list(answers) == [f"destination {destination.name}: deleted, answered 200"]


def test_settings_are_checked_the_token_masked_and_events_refused(fake, gold, source):
    with pytest.raises(ValidationError) as refused:
        destination_create(
            name="Meta events",
            kind="meta_custom_audience",
            config={"audience_id": AUDIENCE, "access_token": TOKEN, "api_url": fake.url},
            purpose_code="advertising",
        )
    assert "receives an audience, not events: choose a segment" in str(refused.value)
    for config, message in (
        ({"audience_id": "abc", "access_token": TOKEN}, "audience_id: the Custom Audience's"),
        ({"audience_id": AUDIENCE, "access_token": " "}, "access_token: a Marketing API"),
        ({"audience_id": AUDIENCE, "access_token": TOKEN, "api_version": "19"}, "like v19.0"),
    ):
        with pytest.raises(ValidationError) as refused:
            destination_create(
                name="Meta",
                kind="meta_custom_audience",
                config=config,
                purpose_code="advertising",
                segment=gold,
            )
        assert message in str(refused.value)

    destination = meta(fake, gold)
    assert config_shown(destination, may_change=False)["access_token"] != TOKEN
    assert config_shown(destination, may_change=True)["access_token"] == TOKEN
