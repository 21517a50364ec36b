from __future__ import annotations

import pytest

from consent.models import DataSubjectRequest
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def officer(api_client_with_scopes):
    return api_client_with_scopes("consent:read", "consent:write", "pii:read")


@pytest.fixture
def person(purposes):
    return IdentityFactory(kind="email", value="jorien@example.org").profile


def create(client, **payload):
    response = client.post("/api/consent/requests/", {"kind": "access", **payload}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_dsar_runs_end_to_end_through_the_api(officer, person, django_capture_on_commit_callbacks):
    request_id = create(officer, subject_email="Jorien@example.org")["id"]
    base = f"/api/consent/requests/{request_id}"
    verified = officer.post(f"{base}/verify/", {"note": "passport checked"}, format="json")
    assert verified.status_code == 200 and verified.json()["profile"] == person.pk
    with django_capture_on_commit_callbacks(execute=True):
        queued = officer.post(f"{base}/process/")
    assert queued.status_code == 202
    assert DataSubjectRequest.objects.get(pk=request_id).status == "completed"
    log = officer.get(f"{base}/actions/").json()
    assert [row["action"] for row in log] == ["completed", "started", "verified", "created"]
    assert log[-1]["actor_label"].startswith("api-key:")
    download = officer.get(f"{base}/result/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")


def test_result_needs_pii_access(api_client_with_scopes, officer, person):
    request_id = create(officer, subject_email="jorien@example.org")["id"]
    reader = api_client_with_scopes("consent:read")
    assert reader.get(f"/api/consent/requests/{request_id}/result/").status_code == 403
    assert officer.get(f"/api/consent/requests/{request_id}/result/").status_code == 404


def test_process_before_verify_is_refused(officer, person):
    request_id = create(officer, subject_email="jorien@example.org")["id"]
    response = officer.post(f"/api/consent/requests/{request_id}/process/")
    assert response.status_code == 400
    assert "verify it first" in response.json()["errors"]["status"][0]


def test_reject_and_bad_transition(officer, person):
    request_id = create(officer, subject_email="jorien@example.org")["id"]
    base = f"/api/consent/requests/{request_id}"
    assert officer.post(f"{base}/reject/", {}, format="json").status_code == 400
    rejected = officer.post(f"{base}/reject/", {"reason": "not the account holder"}, format="json")
    assert rejected.json()["status"] == "rejected"
    again = officer.post(f"{base}/verify/", {}, format="json")
    assert again.status_code == 400
    assert "closed" in again.json()["errors"]["status"][0]


def test_extend_validates_days_and_reason(officer, person):
    request_id = create(officer, subject_email="jorien@example.org")["id"]
    url = f"/api/consent/requests/{request_id}/extend/"
    assert officer.post(url, {"days": 0, "reason": "x"}, format="json").status_code == 400
    assert officer.post(url, {"days": 10}, format="json").status_code == 400
    extended = officer.post(url, {"days": 10, "reason": "complex request"}, format="json")
    assert extended.status_code == 200
    assert extended.json()["extension_reason"] == "complex request"


def test_create_validates_identifiers(officer):
    response = officer.post(
        "/api/consent/requests/",
        {"kind": "access", "subject_phone": "12"},
        format="json",
    )
    assert response.status_code == 400
    assert "subject_phone" in response.json()["errors"]
    rectify = officer.post(
        "/api/consent/requests/",
        {"kind": "rectification", "subject_email": "a@example.org"},
        format="json",
    )
    assert "corrections" in rectify.json()["errors"]


@pytest.mark.parametrize("verb", ["verify", "reject", "extend", "process"])
def test_actions_need_the_write_scope(api_client_with_scopes, officer, person, verb):
    request_id = create(officer, subject_email="jorien@example.org")["id"]
    reader = api_client_with_scopes("consent:read")
    assert reader.post(f"/api/consent/requests/{request_id}/{verb}/").status_code == 403
