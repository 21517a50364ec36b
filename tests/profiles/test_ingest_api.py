from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from profiles.ingest.collect import messages_collect
from profiles.models import Identity, MergeConflict, ProfileMerge, RejectedMessage
from tests.factories import IdentityFactory, ProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


def test_merge_action_needs_a_key_and_the_write_scope(api_client_with_scopes):
    older, newer = ProfileFactory(), ProfileFactory()
    url = f"/api/profiles/{newer.pk}/merge/"
    assert APIClient().post(url, {"profile_ids": [older.pk]}, format="json").status_code == 401
    reader = api_client_with_scopes("profiles:read")
    assert reader.post(url, {"profile_ids": [older.pk]}, format="json").status_code == 403
    assert not ProfileMerge.objects.exists()


def test_merge_action_merges_into_the_oldest(api_client_with_scopes):
    older, newer = ProfileFactory(), ProfileFactory()
    IdentityFactory(profile=newer, kind="user_id", value="u-2")
    client = api_client_with_scopes("profiles:write", "profiles:read")
    response = client.post(
        f"/api/profiles/{newer.pk}/merge/", {"profile_ids": [older.pk]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()[0]["survivor"] == older.pk
    assert Identity.objects.get(value="u-2").profile_id == older.pk
    # The merged id keeps answering with the survivor.
    assert client.get(f"/api/profiles/{newer.pk}/").json()["id"] == older.pk


@pytest.mark.parametrize("body", [{"profile_ids": []}, {"profile_ids": ["x"]}, {}])
def test_merge_action_refuses_bad_input(api_client_with_scopes, body):
    profile = ProfileFactory()
    client = api_client_with_scopes("profiles:write")
    response = client.post(f"/api/profiles/{profile.pk}/merge/", body, format="json")
    assert response.status_code == 400
    assert "profile_ids" in response.json()["errors"]


def test_merge_with_itself_is_refused_with_a_reason(api_client_with_scopes):
    profile = ProfileFactory()
    client = api_client_with_scopes("profiles:write")
    response = client.post(
        f"/api/profiles/{profile.pk}/merge/", {"profile_ids": [profile.pk]}, format="json"
    )
    assert response.status_code == 400
    assert "at least two" in response.json()["message"]


def test_undo_a_merge_through_the_api(api_client_with_scopes):
    older, newer = ProfileFactory(), ProfileFactory()
    client = api_client_with_scopes("profiles:write", "profiles:read")
    client.post(f"/api/profiles/{older.pk}/merge/", {"profile_ids": [newer.pk]}, format="json")
    merge = ProfileMerge.objects.get()
    assert client.get(f"/api/profile-merges/?profile={newer.pk}").json()["results"][0]["id"] == (
        merge.pk
    )
    response = client.post(f"/api/profile-merges/{merge.pk}/undo/")
    assert response.status_code == 200
    assert response.json()["undone_at"]
    again = client.post(f"/api/profile-merges/{merge.pk}/undo/")
    assert again.status_code == 400
    assert "already undone" in again.json()["message"]


def test_conflicts_are_decided_through_the_api(api_client_with_scopes):
    profiles = ProfileFactory.create_batch(4)
    conflicts = [
        MergeConflict.objects.create(
            profile=profiles[i],
            other_profile=profiles[i + 1],
            identifier_kind="email",
            identifier_value="anna@example.com",
            reason="test",
        )
        for i in (0, 2)
    ]
    client = api_client_with_scopes("profiles:write", "profiles:read")
    listed = client.get("/api/merge-conflicts/?status=open").json()["results"]
    assert len(listed) == 2
    assert listed[0]["identifier_value"] != "anna@example.com"  # masked without pii:read
    assert client.post(f"/api/merge-conflicts/{conflicts[0].pk}/approve/").json()["status"] == (
        "merged"
    )
    assert client.post(f"/api/merge-conflicts/{conflicts[1].pk}/reject/").json()["status"] == (
        "kept_apart"
    )
    assert client.post(f"/api/merge-conflicts/{conflicts[1].pk}/approve/").status_code == 400


def test_rejected_messages_are_listed_masked_and_retried(api_client_with_scopes):
    source = SourceFactory()
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "event": "E", "traits": {"email": "x@example.com"}}],
    )
    rejected = RejectedMessage.objects.get()
    client = api_client_with_scopes("profiles:write", "profiles:read")
    listed = client.get(f"/api/rejected-messages/?source={source.pk}").json()["results"]
    assert listed[0]["payload"]["traits"]["email"] != "x@example.com"
    still_bad = client.post(f"/api/rejected-messages/{rejected.pk}/retry/")
    assert still_bad.status_code == 400
    assert "userId or anonymousId" in still_bad.json()["message"]
    rejected.payload["userId"] = "u-1"
    rejected.save()
    assert client.post(f"/api/rejected-messages/{rejected.pk}/retry/").json()["status"] == (
        "retried"
    )
