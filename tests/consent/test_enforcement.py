"""One selector answers "who may be used for purpose P now", and every activation path asks
it: a person who objects disappears from all of them at once."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from audiences.services import audience_export
from consent.services import consent_object, consent_record
from crm.services import contact_create
from profiles.models import Identity, Segment, SegmentMembership
from profiles.segments.exports import segment_export_webhook
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

EMAIL = "anna@example.com"


@pytest.fixture
def anna(settings):
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 1
    contact = contact_create(email=EMAIL, first_name="Anna")
    profile = contact.profile
    for purpose in ("email_marketing", "advertising"):
        consent_record(profile=profile, purpose=purpose, status="granted", method="web_form")
    segment = Segment.objects.create(name="Newsletter", kind="static")
    SegmentMembership.objects.create(
        segment=segment, profile=profile, entered_at=profile.created_at
    )
    # a second member who never consented, so exports are never empty by accident
    other = ProfileFactory()
    IdentityFactory(profile=other, kind=Identity.Kind.EMAIL, value="bob@example.com")
    SegmentMembership.objects.create(segment=segment, profile=other, entered_at=other.created_at)
    return profile, segment


class Receiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        Receiver.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]  # a real local receiver
    Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def segment_csv(api_client_with_scopes, segment) -> str:
    client = api_client_with_scopes("profiles:write", "pii:read")
    response = client.post(
        f"/api/segments/{segment.pk}/export/",
        {"purpose": "email_marketing", "format": "csv"},
        format="json",
    )
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


def webhook_emails(segment, url) -> list[str]:
    Receiver.bodies = []
    segment_export_webhook(segment=segment, purpose_code="email_marketing", url=url)
    return [p.get("email") for body in Receiver.bodies for p in body["profiles"]]


def google_hashes(segment) -> list[str]:
    profiles = segment.memberships.values_list("profile", flat=True)
    from profiles.models import Profile

    job = audience_export(
        destination="google", profiles=Profile.objects.filter(pk__in=profiles), segment=segment
    )
    if not job.file:
        return []
    with job.file.open("rb") as handle:
        return [row["Email"] for row in csv.DictReader(io.StringIO(handle.read().decode()))]


def mailing_list(api_client_with_scopes) -> list[str]:
    client = api_client_with_scopes("crm:read", "pii:read")
    response = client.get("/api/crm/contacts/mailing-list/", {"purpose": "email_marketing"})
    assert response.status_code == 200
    return [row["email"] for row in response.json()["results"]]


def test_an_objection_removes_the_person_from_every_activation_path(
    anna, api_client_with_scopes, webhook
):
    profile, segment = anna
    anna_hash = hashlib.sha256(EMAIL.encode()).hexdigest()

    # Given consent: Anna is on every list, Bob (no consent) on none
    assert EMAIL in segment_csv(api_client_with_scopes, segment)
    assert webhook_emails(segment, webhook) == [EMAIL]
    assert google_hashes(segment) == [anna_hash]
    assert mailing_list(api_client_with_scopes) == [EMAIL]

    # When she objects to direct marketing (GDPR Art. 21)
    consent_object(profile=profile, method="api")

    # Then she is gone from all of them at once
    assert EMAIL not in segment_csv(api_client_with_scopes, segment)
    assert webhook_emails(segment, webhook) == []
    assert google_hashes(segment) == []
    assert mailing_list(api_client_with_scopes) == []


def test_mailing_list_needs_personal_data_access_and_a_known_purpose(api_client_with_scopes):
    no_pii = api_client_with_scopes("crm:read")
    with_pii = api_client_with_scopes("crm:read", "pii:read")

    assert (
        no_pii.get("/api/crm/contacts/mailing-list/", {"purpose": "email_marketing"}).status_code
        == 403
    )
    response = with_pii.get("/api/crm/contacts/mailing-list/", {"purpose": "spam"})
    assert response.status_code == 400
    assert "unknown or inactive purpose" in response.json()["errors"]["purpose"][0]
