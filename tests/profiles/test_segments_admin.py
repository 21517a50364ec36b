from __future__ import annotations

import json

import pytest
from django.urls import reverse

from profiles.models import Segment
from profiles.segments.membership import segment_refresh
from tests.factories import ProfileFactory, SegmentFactory

pytestmark = pytest.mark.django_db

DUTCH = {"trait": "country", "op": "eq", "value": "NL"}
PREVIEW = "/admin/profiles/segment/preview/"


def preview(client, rule, segment=None):
    return client.post(
        PREVIEW, json.dumps({"rule": rule, "segment": segment}), content_type="application/json"
    )


def test_changelist_has_no_n_plus_one(admin_client, superuser, django_assert_max_num_queries):
    for _ in range(30):
        SegmentFactory(created_by=superuser)
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:profiles_segment_changelist"))
    assert response.status_code == 200


def test_add_form_refuses_an_invalid_rule_with_its_path(admin_client):
    response = admin_client.post(
        reverse("admin:profiles_segment_add"),
        {
            "name": "Broken",
            "kind": "dynamic",
            "rule": json.dumps({"all": [{"event": "X", "within_days": "seven"}]}),
            "refresh_interval_minutes": 60,
        },
    )
    assert response.status_code == 200
    assert "all[0].event.within_days: expected whole days" in response.content.decode()
    assert not Segment.objects.filter(name="Broken").exists()


def test_add_form_saves_and_refreshes(admin_client, django_capture_on_commit_callbacks):
    ProfileFactory(traits={"country": "NL"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:profiles_segment_add"),
            {
                "name": "Dutch",
                "kind": "dynamic",
                "rule": json.dumps(DUTCH),
                "refresh_interval_minutes": 60,
            },
        )
    assert response.status_code == 302
    segment = Segment.objects.get(name="Dutch")
    assert (segment.size, segment.status) == (1, "ready")


def test_preview_endpoint_counts_and_reports_errors(admin_client):
    ProfileFactory(traits={"country": "NL", "firstName": "Anna"})
    ok = preview(admin_client, DUTCH)
    assert ok.status_code == 200
    assert ok.json()["count"] == 1
    assert ok.json()["sample"][0]["name"] == "Anna"
    bad = preview(admin_client, {"trait": "country", "op": "like", "value": "N%"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0].startswith("trait.op: unknown operator 'like'")


def test_preview_masks_names_and_needs_edit_permission(client, user_with_role):
    ProfileFactory(traits={"country": "NL", "firstName": "Anna"})
    client.force_login(user_with_role("Data engineer"))  # edits profiles, no PII
    body = preview(client, DUTCH).json()
    assert body["count"] == 1
    assert "Anna" not in body["sample"][0]["name"]
    client.force_login(user_with_role("Analyst"))  # read-only
    assert preview(client, DUTCH).status_code == 403


def test_change_page_shows_preview_size_members_and_history(admin_client):
    anna = ProfileFactory(traits={"country": "NL", "firstName": "Anna"})
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    response = admin_client.get(reverse("admin:profiles_segment_change", args=[segment.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="segment-preview-run"' in page
    assert "<svg" in page
    assert f">{anna.pk}</a>" in page
    assert "Entered" in page


def test_failed_refresh_error_is_shown(admin_client):
    segment = SegmentFactory(rule=DUTCH, status="failed", last_error="OperationalError: timeout")
    response = admin_client.get(reverse("admin:profiles_segment_change", args=[segment.pk]))
    assert "OperationalError: timeout" in response.content.decode()


def test_history_changelist(admin_client, django_assert_max_num_queries):
    for n in range(20):
        ProfileFactory(traits={"country": "NL", "n": n})
    segment_refresh(segment=SegmentFactory(rule=DUTCH))
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:profiles_segmentmembershipchange_changelist"))
    assert response.status_code == 200


def test_static_upload_page_replaces_members(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from profiles.models import Identity, SegmentMembership
    from tests.factories import IdentityFactory

    known = IdentityFactory(kind=Identity.Kind.USER_ID, value="u-42")
    segment = SegmentFactory(kind=Segment.Kind.STATIC, rule={})
    url = reverse("admin:profiles_segment_upload", args=[segment.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    # A browser sends the file only from a multipart form.
    assert 'enctype="multipart/form-data"' in page.content.decode()
    response = admin_client.post(
        url,
        {
            "file": SimpleUploadedFile("ids.csv", b"user_id\nu-42\nu-99\n"),
            "identifier_kind": "user_id",
        },
        follow=True,
    )
    assert "1 profiles found" in response.content.decode()
    assert "Not found (1): u-99" in response.content.decode()
    assert SegmentMembership.objects.filter(segment=segment, profile=known.profile).exists()


def test_upload_page_needs_change_permission(client, user_with_role):
    segment = SegmentFactory(kind=Segment.Kind.STATIC, rule={})
    client.force_login(user_with_role("Analyst"))
    response = client.get(reverse("admin:profiles_segment_upload", args=[segment.pk]))
    assert response.status_code == 403
