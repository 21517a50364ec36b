"""A segment synced to a Mailchimp list tag, against a local fake of the Marketing API 3.0 that
checks requests as Mailchimp does (Basic key, list and tag ids, at most 500 members a call) and
answers like it: members subscribed if new (an unsubscribed one stays so), the tag following
the segment, a 429, a wrong key (401 with its detail), and an erasure's permanent deletion."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from cdphub.delivery import deliveries_send
from cdphub.models import Delivery
from consent.dsar import dsar_create, dsar_process, dsar_verify
from profiles.destinations.kinds import config_shown
from profiles.destinations.mailchimp import api_url_of, subscriber_hash
from profiles.destinations.services import destination_create
from profiles.services import source_create
from tests.audience_sync import gold_segment, identify

pytestmark = pytest.mark.django_db

KEY = "0123456789abcdef0123456789abcdef-us21"
LIST = "9e67587f52"
TAG = "4321"


class FakeMailchimp:
    """The three calls an audience sync makes; ``statuses``: statuses to answer first."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.members: dict[str, str] = {}  # address -> status
        self.tagged: set[str] = set()
        self.calls: list[tuple[str, dict | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.calls.append((self.path, body))
                status, answer = fake.handle(self.path, body, self.headers.get("Authorization"))
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def problem(self, status: int, title: str, detail: str) -> tuple[int, dict]:
        return status, {"type": "https://mailchimp.com/developer/", "title": title,
                        "status": status, "detail": detail, "instance": "x"}  # fmt: skip

    def handle(self, path: str, body: dict | None, auth: str | None) -> tuple[int, dict | None]:
        expected = "Basic " + base64.b64encode(f"cdphub:{KEY}".encode()).decode()
        if auth != expected:
            return self.problem(401, "API Key Invalid", "Your API key may be invalid.")
        if self.statuses:
            status = self.statuses.pop(0)
            return self.problem(status, "Too Many Requests", "You have exceeded the limit.")
        if path == f"/3.0/lists/{LIST}":
            assert len(body["members"]) <= 500 and body["update_existing"] is False
            for member in body["members"]:
                self.members.setdefault(member["email_address"], member["status_if_new"])
            return 200, {"new_members": [], "errors": [], "error_count": 0}
        if path == f"/3.0/lists/{LIST}/segments/{TAG}":
            adding, removing = body["members_to_add"], body["members_to_remove"]
            assert len(adding) <= 500 and len(removing) <= 500
            missing = [e for e in adding if e not in self.members]
            self.tagged |= set(adding) - set(missing)
            self.tagged -= set(removing)
            return 200, {"total_added": len(adding), "error_count": len(missing)}
        deletion = re.fullmatch(rf"/3\.0/lists/{LIST}/members/(\w+)/actions/delete-permanent", path)
        if deletion:
            found = [e for e in self.members if subscriber_hash(e) == deletion[1]]
            if not found:
                return self.problem(404, "Resource Not Found", "The member does not exist.")
            del self.members[found[0]]
            self.tagged.discard(found[0])
            return 204, None
        return self.problem(404, "Resource Not Found", f"No list or tag at {path}.")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeMailchimp()
    yield server
    server.close()


@pytest.fixture
def source(delivery_engine):
    delivery_engine.CDPHUB_MIN_AUDIENCE_SIZE = 2
    return source_create(name="Web shop")[0]


@pytest.fixture
def gold(source):
    return gold_segment(source, "email_marketing", {"u-1": None, "u-2": None, "u-3": None})


def mailchimp(fake, segment, key=KEY, name="Newsletter"):
    return destination_create(
        name=name,
        kind="mailchimp",
        config={"api_key": key, "list_id": LIST, "tag_id": TAG, "api_url": fake.url},
        purpose_code="email_marketing",
        segment=segment,
    )[0]


def test_the_tag_follows_the_segment_and_an_unsubscribe_there_is_kept(
    fake, source, gold, django_capture_on_commit_callbacks
):
    fake.members["u-3@example.com"] = "unsubscribed"  # said no in Mailchimp itself
    with django_capture_on_commit_callbacks(execute=True):
        mailchimp(fake, gold)
    deliveries_send()
    assert fake.members == {
        "u-1@example.com": "subscribed",
        "u-2@example.com": "subscribed",
        "u-3@example.com": "unsubscribed",
    }
    assert fake.tagged == {"u-1@example.com", "u-2@example.com", "u-3@example.com"}

    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-2", "silver", 1)
    deliveries_send()
    path, body = fake.calls[-1]
    assert path == f"/3.0/lists/{LIST}/segments/{TAG}"
    assert body == {"members_to_add": [], "members_to_remove": ["u-2@example.com"]}
    assert "u-2@example.com" not in fake.tagged
    assert fake.members["u-2@example.com"] == "subscribed"  # off the tag, still on the list


def test_a_429_is_retried_and_a_wrong_key_is_a_dead_letter_with_mailchimps_detail(
    fake, gold, django_capture_on_commit_callbacks
):
    fake.statuses = [429]
    with django_capture_on_commit_callbacks(execute=True):
        mailchimp(fake, gold)
    deliveries_send()
    assert len(fake.tagged) == 3

    wrong = "fedcba9876543210fedcba9876543210-us21"
    with django_capture_on_commit_callbacks(execute=True):
        destination = mailchimp(fake, gold, key=wrong, name="Old key")
    deliveries_send()
    dead = Delivery.objects.filter(destination=destination, status="dead")
    assert dead.count() == 3
    assert "answered 401 (refused): Your API key may be invalid." in dead.first().last_error


def test_an_erasure_deletes_the_member_for_good_without_the_address_in_the_outbox(
    fake, gold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        destination = mailchimp(fake, gold)
    deliveries_send()
    request = dsar_create(kind="erasure", email="u-1@example.com")
    dsar_verify(request=request)
    dsar_process(request=request)
    deletion = Delivery.objects.get(destination=destination, payload__type="delete")
    assert "u-1@example.com" not in json.dumps(deletion.payload)
    deliveries_send()

    assert "u-1@example.com" not in fake.members
    answers = request.actions.filter(action="destination_answer").values_list("note", flat=True)
    assert list(answers) == ["destination Newsletter: deleted, answered 204"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"api_key": "nope", "list_id": LIST, "tag_id": TAG}, "api_key: a Mailchimp API key"),
        ({"api_key": KEY, "list_id": "a b", "tag_id": TAG}, "list_id: the audience (list) id"),
        ({"api_key": KEY, "list_id": LIST, "tag_id": "vip"}, "tag_id: the numeric id"),
        ({"api_key": KEY, "list_id": LIST}, "tag_id: the numeric id"),
    ],
)
def test_settings_are_checked_naming_the_entry(gold, config, message):
    with pytest.raises(ValidationError) as refused:
        destination_create(
            name="Newsletter",
            kind="mailchimp",
            config=config,
            purpose_code="email_marketing",
            segment=gold,
        )
    assert message in str(refused.value)


def test_the_key_is_masked_and_its_data_centre_names_the_host(fake, gold):
    assert api_url_of(KEY) == "https://us21.api.mailchimp.com"
    destination = mailchimp(fake, gold)
    assert config_shown(destination, may_change=False)["api_key"] != KEY
    assert config_shown(destination, may_change=True)["api_key"] == KEY
