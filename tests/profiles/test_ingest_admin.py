from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import (
    Identity,
    MergeConflict,
    PendingMessage,
    ProfileMerge,
    RejectedMessage,
)
from tests.factories import (
    EventFactory,
    IdentityFactory,
    MergeConflictFactory,
    PendingMessageFactory,
    ProfileFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


def rejected(source, count=1):
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "event": "E", "traits": {"email": "x@example.com"}}] * count,
    )
    return RejectedMessage.objects.order_by("id")


def act(client, model: str, action: str, ids):
    url = reverse(f"admin:profiles_{model}_changelist")
    return client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]})


def test_rejected_messages_changelist_has_no_n_plus_one(
    admin_client, django_assert_max_num_queries
):
    for _ in range(3):
        rejected(SourceFactory(), count=20)
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:profiles_rejectedmessage_changelist"))
    assert response.status_code == 200
    assert "userId or anonymousId is required" in response.content.decode()


def test_retry_accepts_a_fixed_message_and_reports_a_still_broken_one(admin_client):
    source = SourceFactory()
    fixed, broken = rejected(source, count=2)
    fixed.payload = {**fixed.payload, "userId": "u-1"}
    fixed.save()
    act(admin_client, "rejectedmessage", "retry", [fixed.pk, broken.pk])
    fixed.refresh_from_db()
    broken.refresh_from_db()
    assert fixed.status == RejectedMessage.Status.RETRIED
    assert broken.status == RejectedMessage.Status.REJECTED
    assert PendingMessage.objects.get().payload["userId"] == "u-1"


def test_payload_is_masked_for_a_role_without_pii(client, user_with_role):
    rejected(SourceFactory())
    client.force_login(user_with_role("Data engineer"))
    message = RejectedMessage.objects.get()
    response = client.get(reverse("admin:profiles_rejectedmessage_change", args=[message.pk]))
    assert response.status_code == 200
    assert "x@example.com" not in response.content.decode()


def test_conflict_queue_approve_merges_and_reject_keeps_apart(admin_client, settings):
    settings.CDPHUB_SHARED_ID_MAX_USERS = 5
    source = SourceFactory()
    for user in ("u-1", "u-2", "u-3"):
        messages_collect(
            source_id=source.pk, messages=[{"type": "identify", "userId": user, "anonymousId": "k"}]
        )
        pending_process()
    first, second = MergeConflict.objects.order_by("id")
    response = admin_client.get(reverse("admin:profiles_mergeconflict_changelist"))
    assert response.status_code == 200
    act(admin_client, "mergeconflict", "approve", [first.pk])
    act(admin_client, "mergeconflict", "reject", [second.pk])
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == MergeConflict.Status.MERGED
    assert first.decided_by.username == "root"
    assert second.status == MergeConflict.Status.KEPT_APART
    assert ProfileMerge.objects.count() == 1


def test_conflict_changelist_has_no_n_plus_one(admin_client, django_assert_max_num_queries):
    MergeConflictFactory.create_batch(30)
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:profiles_mergeconflict_changelist"))
    assert response.status_code == 200
    assert response.content.decode().count('name="_selected_action"') == 30


def test_process_pending_command_processes_everything(capsys):
    PendingMessageFactory.create_batch(3)
    call_command("process_pending", "--batch-size", "2")
    assert "processed 3 messages" in capsys.readouterr().out
    assert not PendingMessage.objects.exists()


def test_actions_need_change_permission(client, user_with_role):
    conflict_profiles = ProfileFactory.create_batch(2)
    conflict = MergeConflict.objects.create(
        profile=conflict_profiles[0],
        other_profile=conflict_profiles[1],
        identifier_kind="anonymous_id",
        identifier_value="k",
        reason="test",
    )
    client.force_login(user_with_role("Analyst"))
    act(client, "mergeconflict", "approve", [conflict.pk])
    conflict.refresh_from_db()
    assert conflict.status == MergeConflict.Status.OPEN


def test_manual_merge_and_undo_from_the_admin(admin_client):
    older, newer = ProfileFactory(), ProfileFactory()
    IdentityFactory(profile=newer, kind="user_id", value="u-2")
    act(admin_client, "profile", "merge_selected", [older.pk, newer.pk])
    merge = ProfileMerge.objects.get()
    assert (merge.survivor_id, merge.merged_id) == (older.pk, newer.pk)
    assert merge.merged_by.username == "root"
    assert Identity.objects.get(value="u-2").profile_id == older.pk
    act(admin_client, "profilemerge", "undo_merges", [merge.pk])
    merge.refresh_from_db()
    assert merge.undone_at is not None
    assert Identity.objects.get(value="u-2").profile_id == newer.pk


def test_source_page_shows_events_per_day_and_rejections(admin_client):
    source = SourceFactory()
    EventFactory.create_batch(3, source=source)
    two_days_ago = timezone.now() - timedelta(days=2)
    EventFactory(source=source, timestamp=two_days_ago, received_at=two_days_ago)
    rejected(source)
    response = admin_client.get(reverse("admin:profiles_source_change", args=[source.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    today = timezone.now().date().isoformat()
    assert f"<td>{today}</td><td>3</td>" in html
    assert f"<td>{two_days_ago.date().isoformat()}</td><td>1</td>" in html
    assert "userId or anonymousId is required" in html


def test_timeline_is_paginated_and_filtered(admin_client):
    profile = ProfileFactory()
    source = SourceFactory()
    now = timezone.now()
    for i in range(60):
        EventFactory(
            profile=profile,
            source=source,
            type="track" if i % 2 else "page",
            name="Order Completed" if i % 3 == 0 else "Viewed",
            timestamp=now - timedelta(days=i),
        )
    url = reverse("admin:profiles_profile_timeline", args=[profile.pk])
    first_page = admin_client.get(url)
    assert first_page.status_code == 200
    assert first_page.context["page"].paginator.count == 60
    assert len(first_page.context["page"].object_list) == 50
    filtered = admin_client.get(url, {"type": "track", "name": "Order Completed"})
    events = filtered.context["page"].object_list
    assert events and all(e.type == "track" and e.name == "Order Completed" for e in events)
    since = (now - timedelta(days=5)).date().isoformat()
    recent = admin_client.get(url, {"since": since})
    assert recent.context["page"].paginator.count in (5, 6)
    bad = admin_client.get(url, {"since": "not a date"})
    assert bad.status_code == 200
    assert "Enter a valid date" in bad.content.decode()


def test_timeline_of_a_merged_profile_redirects_to_the_survivor(admin_client):
    older, newer = ProfileFactory(), ProfileFactory()
    act(admin_client, "profile", "merge_selected", [older.pk, newer.pk])
    response = admin_client.get(reverse("admin:profiles_profile_timeline", args=[newer.pk]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:profiles_profile_timeline", args=[older.pk]))


def test_timeline_masks_personal_data_without_pii_permission(client, user_with_role):
    profile = ProfileFactory()
    EventFactory(profile=profile, type="identify", properties={"email": "anna@example.com"})
    IdentityFactory(profile=profile, value="anna@example.com")
    client.force_login(user_with_role("Analyst"))
    response = client.get(reverse("admin:profiles_profile_timeline", args=[profile.pk]))
    assert response.status_code == 200
    assert "anna@example.com" not in response.content.decode()


@pytest.mark.parametrize("role", ["Data engineer", "Marketer"])
def test_pages_open_for_roles_with_and_without_pii(client, user_with_role, role):
    source = SourceFactory()
    profiles = ProfileFactory.create_batch(2)
    conflict = MergeConflict.objects.create(
        profile=profiles[0],
        other_profile=profiles[1],
        identifier_kind="email",
        identifier_value="anna@example.com",
        reason="test",
    )
    rejected(source)
    client.force_login(user_with_role(role))
    pages = [
        reverse("admin:profiles_source_change", args=[source.pk]),
        reverse("admin:profiles_profile_change", args=[profiles[0].pk]),
        reverse("admin:profiles_mergeconflict_change", args=[conflict.pk]),
        reverse("admin:profiles_mergeconflict_changelist"),
        reverse("admin:profiles_rejectedmessage_change", args=[RejectedMessage.objects.get().pk]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        shown = "anna@example.com" in response.content.decode()
        personal = "mergeconflict" in page or "/profile/" in page
        assert shown is (role == "Marketer" and personal), page
