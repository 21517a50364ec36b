"""The one audit trail: the services record who did what, in the same transaction, and a
record's history page shows it."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from cdphub.models import AuditEntry
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.models import ProcessingRestriction
from crm.models import Contact, DuplicateCandidate
from profiles.models import ProfileMerge
from profiles.resolution.merges import profiles_merge_manual
from profiles.services import source_create
from tests.factories import (
    ContactFactory,
    IdentityFactory,
    ProfileFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


def changelist_action(client, model_admin_url: str, action: str, ids, **extra):
    return client.post(
        model_admin_url,
        {"action": action, "_selected_action": [str(pk) for pk in ids], **extra},
        follow=True,
    )


def test_a_merge_and_its_undo_name_who_did_them(admin_client, superuser):
    older, newer = ProfileFactory(), ProfileFactory()
    (merge,) = profiles_merge_manual(profile_ids=[older.pk, newer.pk], merged_by=superuser)

    changelist_action(
        admin_client, reverse("admin:profiles_profilemerge_changelist"), "undo_merges", [merge.pk]
    )

    undo = AuditEntry.objects.get(action="profile_merge.undo")
    assert (undo.actor, undo.object_type, undo.object_id) == (
        superuser,
        "profiles.profilemerge",
        str(merge.pk),
    )
    assert AuditEntry.objects.get(action="profile.merge").object_id == str(older.pk)
    history = admin_client.get(reverse("admin:profiles_profilemerge_history", args=[merge.pk]))
    assert "profile_merge.undo" in history.content.decode()
    assert "root" in history.content.decode()


def test_an_automatic_merge_is_recorded_as_the_system(settings):
    from profiles.resolution.merges import profile_merge

    a, b = ProfileFactory(), ProfileFactory()
    profile_merge(survivor_id=a.pk, merged_id=b.pk, reason="shared identifier")
    assert AuditEntry.objects.get(action="profile.merge").actor_label == "system"


def test_bulk_crm_actions_record_one_entry_per_record(admin_client, superuser):
    contacts = ContactFactory.create_batch(3)
    owner = StaffUserFactory()

    changelist_action(
        admin_client,
        reverse("admin:crm_contact_changelist"),
        "assign_owner",
        [c.pk for c in contacts],
        owner=owner.pk,
    )

    entries = AuditEntry.objects.filter(action="owner.assign")
    assert sorted(entries.values_list("object_id", flat=True)) == sorted(
        str(c.pk) for c in contacts
    )
    assert {e.actor for e in entries} == {superuser}
    assert Contact.objects.filter(owner=owner).count() == 3


def test_dismissing_duplicates_names_the_reviewer(admin_client, superuser):
    a, b = ContactFactory(), ContactFactory()
    pair = DuplicateCandidate.objects.create(contact_a=a, contact_b=b, score=0.9, reasons=["name"])

    changelist_action(
        admin_client, reverse("admin:crm_duplicatecandidate_changelist"), "dismiss", [pair.pk]
    )

    pair.refresh_from_db()
    assert pair.status == DuplicateCandidate.Status.DISMISSED
    assert AuditEntry.objects.get(action="duplicate.dismiss").actor == superuser


def test_rotating_a_write_key_refuses_the_old_one(admin_client, client, superuser):
    source, old_key = source_create(name="Website")
    message = {"batch": [{"type": "track", "event": "E", "userId": "u1"}]}

    page = changelist_action(
        admin_client, reverse("admin:profiles_source_changelist"), "rotate_write_key", [source.pk]
    )

    (notice,) = [str(m) for m in page.context["messages"] if "New write key" in str(m)]
    new_key = notice.split(": ", 1)[1].split(" ", 1)[0]
    assert new_key != old_key

    def send(key):
        return client.post(
            "/v1/batch", json.dumps({**message, "writeKey": key}), content_type="application/json"
        )

    assert send(old_key).status_code == 401
    assert send(new_key).status_code == 200
    assert AuditEntry.objects.get(action="source.rotate_write_key").actor == superuser


def test_rotating_a_write_key_through_the_api(api_client_with_scopes):
    source, old_key = source_create(name="App")
    api = api_client_with_scopes("profiles:read", "profiles:write")

    answer = api.post(f"/api/sources/{source.pk}/rotate-write-key/")

    assert answer.status_code == 200, answer.content
    assert answer.json()["write_key"].startswith("wk")
    assert answer.json()["write_key"] != old_key


def test_a_restriction_is_lifted_by_the_action_not_deleted(admin_client, superuser):
    person = ProfileFactory()
    IdentityFactory(profile=person, kind="email", value="marit@example.org")
    request = dsar_create(kind="restriction", email="marit@example.org")
    dsar_verify(request=request)
    dsar_process(request=request)
    restriction = ProcessingRestriction.objects.get(profile=person)
    url = reverse("admin:consent_processingrestriction_changelist")

    page = admin_client.get(url)
    assert 'value="lift"' in page.content.decode()
    assert 'value="delete_selected"' not in page.content.decode()
    changelist_action(admin_client, url, "lift", [restriction.pk])

    assert not ProcessingRestriction.objects.exists()
    assert request.actions.filter(action="restriction_lifted", actor=superuser).exists()
    assert AuditEntry.objects.get(action="processing_restriction.lift").object_id == str(person.pk)


def test_a_merge_without_its_audit_row_is_not_kept(monkeypatch):
    """The entry is written in the change's transaction: if it fails, so does the change."""
    from cdphub import audit

    def broken(**kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr("profiles.resolution.merges.audit_record", broken)
    a, b = ProfileFactory(), ProfileFactory()
    with pytest.raises(RuntimeError):
        profiles_merge_manual(profile_ids=[a.pk, b.pk])
    assert not ProfileMerge.objects.exists()
    assert audit.AuditEntry.objects.count() == 0
