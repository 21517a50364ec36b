"""A segment synced to a Google Customer Match list, against a local fake of the Google Ads API
that checks each call as Google does (OAuth bearer and developer token, a job of type
CUSTOMER_MATCH_USER_LIST for the list with the EU consent signals, hashed identifiers, then
run) and answers like it: the list's members added and removed, a RESOURCE_EXHAUSTED 429, an
UNAUTHENTICATED 401. The erasure's removal reaches it too."""

from __future__ import annotations

import itertools
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

CUSTOMER = "1234567890"
USER_LIST = "987654"
TOKEN = "ya29.test-token"
DEVELOPER = "dev-token-1"
HEX64 = re.compile(r"[0-9a-f]{64}")


class FakeGoogleAds:
    """Offline user data jobs for one Customer Match list; ``errors``: (status, error) first."""

    def __init__(self, *errors: tuple[int, dict]) -> None:
        self.errors = list(errors)
        self.members: set[frozenset] = set()
        self.jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.calls.append((self.path, body))
                status, answer = fake.handle(self.path, body, self.headers)
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

    def error(self, status: int, state: str, message: str) -> tuple[int, dict]:
        return status, {"error": {"code": status, "message": message, "status": state}}

    def handle(self, path: str, body: dict, headers) -> tuple[int, dict]:
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        if headers.get("developer-token") != DEVELOPER:
            return self.error(401, "UNAUTHENTICATED", "The developer token is not valid.")
        if self.errors:
            return self.errors.pop(0)
        base = f"/v17/customers/{CUSTOMER}/offlineUserDataJobs"
        if path == f"{base}:create":
            job = body["job"]
            metadata = job["customerMatchUserListMetadata"]
            assert job["type"] == "CUSTOMER_MATCH_USER_LIST"
            assert metadata["userList"] == f"customers/{CUSTOMER}/userLists/{USER_LIST}"
            assert metadata["consent"] == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
            name = f"customers/{CUSTOMER}/offlineUserDataJobs/{next(self.ids)}"
            self.jobs[name] = {"operations": [], "ran": False}
            return 200, {"resourceName": name}
        found = re.fullmatch(rf"/v17/({base[5:]}/\d+):(addOperations|run)", path)
        if not found or found[1] not in self.jobs:
            return self.error(404, "NOT_FOUND", f"No job at {path}.")
        job = self.jobs[found[1]]
        if found[2] == "addOperations":
            assert body["enablePartialFailure"] is True
            for operation in body["operations"]:
                [(kind, user)] = operation.items()
                assert kind in ("create", "remove")
                for identifier in user["userIdentifiers"]:
                    [(key, value)] = identifier.items()
                    assert key in ("hashedEmail", "hashedPhoneNumber") and HEX64.fullmatch(value)
                identifiers = frozenset(next(iter(i.items())) for i in user["userIdentifiers"])
                job["operations"].append((kind, identifiers))
            return 200, {}
        for kind, identifiers in job["operations"]:
            (self.members.add if kind == "create" else self.members.discard)(identifiers)
        job["ran"] = True
        return 200, {"name": f"customers/{CUSTOMER}/operations/{found[1].rsplit('/', 1)[1]}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeGoogleAds()
    yield server
    server.close()


@pytest.fixture
def source(delivery_engine):
    delivery_engine.CDPHUB_MIN_AUDIENCE_SIZE = 2
    return source_create(name="Web shop")[0]


@pytest.fixture
def gold(source):
    return gold_segment(source, "advertising", {"u-1": "+31612345671", "u-2": None})


def google(fake, segment, token=TOKEN, name="Google list"):
    return destination_create(
        name=name,
        kind="google_customer_match",
        config={
            "customer_id": "123-456-7890",
            "user_list_id": USER_LIST,
            "developer_token": DEVELOPER,
            "access_token": token,
            "api_url": fake.url,
        },
        purpose_code="advertising",
        segment=segment,
    )[0]


U1 = frozenset(
    {
        ("hashedEmail", sha256_hex("u-1@example.com")),
        ("hashedPhoneNumber", sha256_hex("+31612345671")),  # Google's phone: E.164 with "+"
    }
)
U2 = frozenset({("hashedEmail", sha256_hex("u-2@example.com"))})


def test_the_list_follows_the_segment_through_jobs_that_are_run(
    fake, source, gold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        google(fake, gold)
    deliveries_send()
    assert fake.members == {U1, U2}
    assert all(job["ran"] for job in fake.jobs.values())

    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-2", "silver", 1)
    deliveries_send()
    assert fake.members == {U1}  # an exit goes, though the list is now under the minimum
    path, body = fake.calls[-2]
    assert path.endswith(":addOperations")
    assert list(body["operations"][0]) == ["remove"]


def test_a_quota_error_is_retried_and_bad_credentials_are_a_dead_letter(
    fake, gold, django_capture_on_commit_callbacks
):
    fake.errors = [fake.error(429, "RESOURCE_EXHAUSTED", "Too many requests.")]
    with django_capture_on_commit_callbacks(execute=True):
        google(fake, gold)
    deliveries_send()
    assert fake.members == {U1, U2}

    with django_capture_on_commit_callbacks(execute=True):
        destination = google(fake, gold, token="expired", name="Old token")
    deliveries_send()
    dead = Delivery.objects.filter(destination=destination, status="dead")
    assert dead.count() == 2
    assert "answered 401 (refused): Request had invalid credentials." in dead.first().last_error


def test_an_erasure_removes_the_person_from_the_list(
    fake, gold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        destination = google(fake, gold)
    deliveries_send()
    request = dsar_create(kind="erasure", user_id="u-1")
    dsar_verify(request=request)
    dsar_process(request=request)
    deliveries_send()

    assert fake.members == {U2}
    answers = request.actions.filter(action="destination_answer").values_list("note", flat=True)
    assert list(answers) == [f"destination {destination.name}: deleted, answered 200"]


def test_settings_are_checked_and_the_tokens_masked(fake, gold):
    for config, message in (
        ({"customer_id": "12345"}, "customer_id: the Google Ads account, 10 digits"),
        ({"user_list_id": "list"}, "user_list_id: the Customer Match list's id"),
        ({"developer_token": ""}, "developer_token: required"),
        ({"login_customer_id": "x"}, "login_customer_id: a manager account"),
    ):
        base = {
            "customer_id": CUSTOMER,
            "user_list_id": USER_LIST,
            "developer_token": DEVELOPER,
            "access_token": TOKEN,
            "api_url": fake.url,
        }
        with pytest.raises(ValidationError) as refused:
            destination_create(
                name="Google",
                kind="google_customer_match",
                config={**base, **config},
                purpose_code="advertising",
                segment=gold,
            )
        assert message in str(refused.value)
    destination = google(fake, gold)
    assert destination.config["customer_id"] == CUSTOMER  # dashes taken out
    shown = config_shown(destination, may_change=False)
    assert TOKEN not in str(shown) and DEVELOPER not in str(shown)
