from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Visitor
from consent.models import ConsentRecord, ConsentState, ConsentStatus, Purpose
from crm.models import Contact
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    PendingMessage,
    Profile,
    ProfileMerge,
    RejectedMessage,
    Segment,
    SegmentMembership,
    SharedIdentifier,
)
from profiles.resolution.identifiers import message_identifiers
from profiles.resolution.merges import (
    MergeRefused,
    merge_conflict_approve,
    merge_conflict_reject,
    profile_merge_undo,
    profiles_merge_manual,
)
from profiles.selectors import profile_resolve
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def source():
    return SourceFactory()


def send(source, *messages) -> None:
    result = messages_collect(source_id=source.pk, messages=[dict(m) for m in messages])
    assert not result.rejected, result.rejected
    pending_process()


def profile_of(kind: str, value: str) -> Profile:
    return Identity.objects.get(kind=kind, value=value).profile


def at(minutes: int) -> str:
    return (timezone.now() - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()


def test_identifiers_are_normalised_and_junk_dropped():
    payload = {
        "userId": "null",
        "anonymousId": " a-1 ",
        "traits": {"email": " Anna@Example.COM", "phone": "06 12345678"},
        "context": {
            "device": {"id": "undefined"},
            "externalIds": [{"id": "C-9", "type": "shopify_id"}, {"id": ""}],
        },
    }
    assert message_identifiers(payload) == [
        ("email", "anna@example.com"),
        ("phone", "+31612345678"),
        ("external", "shopify_id:C-9"),
        ("anonymous_id", "a-1"),
    ]


def test_rudderstack_external_ids_are_identifiers_too():
    payload = {
        "anonymousId": "a-1",
        "context": {"externalId": [{"id": "4711", "type": "brazeExternalId"}]},
    }
    assert ("external", "brazeExternalId:4711") in message_identifiers(payload)


def test_junk_email_does_not_link_strangers(source):
    send(
        source,
        {"type": "identify", "anonymousId": "a-1", "traits": {"email": "test@test.com"}},
        {"type": "identify", "anonymousId": "a-2", "traits": {"email": "test@test.com"}},
    )
    assert profile_of("anonymous_id", "a-1") != profile_of("anonymous_id", "a-2")
    assert not Identity.objects.filter(kind="email").exists()


def test_new_person_gets_one_profile_and_later_messages_attach(source):
    send(source, {"type": "page", "anonymousId": "a-1", "name": "Home"})
    profile = profile_of("anonymous_id", "a-1")
    send(source, {"type": "track", "anonymousId": "a-1", "event": "Viewed"})
    assert Profile.objects.count() == 1
    assert Event.objects.filter(profile=profile).count() == 2


def test_login_merges_anonymous_profile_into_the_oldest_with_everything(source):
    # Given an anonymous visitor and a known customer, each with linked data
    send(source, {"type": "identify", "userId": "u-1", "traits": {"email": "anna@example.com"}})
    known = profile_of("user_id", "u-1")
    send(source, {"type": "page", "anonymousId": "a-1", "name": "Home"})
    anonymous = profile_of("anonymous_id", "a-1")
    # advertising: the consent that lets the visitor stay linked to the person after the merge
    purpose, _ = Purpose.objects.get_or_create(code="advertising", defaults={"name": "Ads"})
    record = ConsentRecord.objects.create(
        profile=anonymous, purpose=purpose, status=ConsentStatus.GRANTED, method="web_form"
    )
    ConsentState.objects.create(
        profile=anonymous,
        purpose=purpose,
        status=ConsentStatus.GRANTED,
        record=record,
        updated_at=timezone.now(),
    )
    contact = Contact.objects.create(email="anna@example.com", profile=anonymous)
    visitor = Visitor.objects.get(key="a-1")  # the anonymous page view made it a visitor
    visitor.profile = anonymous
    visitor.save()
    segment = Segment.objects.create(name="Visitors")
    SegmentMembership.objects.create(segment=segment, profile=anonymous, entered_at=timezone.now())

    # When the visitor logs in with the same e-mail
    send(
        source,
        {"type": "identify", "anonymousId": "a-1", "traits": {"email": "ANNA@example.com"}},
    )

    # Then the anonymous profile is merged into the older known one, everything moved
    anonymous.refresh_from_db()
    assert anonymous.merged_into_id == known.pk
    assert profile_resolve(anonymous.pk) == known
    assert set(known.identities.values_list("kind", flat=True)) == {
        "user_id",
        "email",
        "anonymous_id",
    }
    assert Event.objects.filter(profile=known).count() == 3
    for row in (contact, visitor, record):
        row.refresh_from_db()
        assert row.profile_id == known.pk
    assert ConsentState.objects.get(purpose=purpose).profile_id == known.pk
    assert SegmentMembership.objects.get(segment=segment).profile_id == known.pk
    merge = ProfileMerge.objects.get()
    assert (merge.survivor_id, merge.merged_id) == (known.pk, anonymous.pk)
    assert merge.moved["crm_contacts"] == [contact.pk]


def test_undo_merge_moves_everything_back(source):
    send(source, {"type": "identify", "userId": "u-1", "traits": {"email": "anna@example.com"}})
    known = profile_of("user_id", "u-1")
    send(source, {"type": "identify", "anonymousId": "a-1", "traits": {"plan": "free"}})
    anonymous = profile_of("anonymous_id", "a-1")
    contact = Contact.objects.create(email="x@example.com", profile=anonymous)
    send(source, {"type": "track", "anonymousId": "a-1", "userId": "u-1", "event": "Login"})
    merge = ProfileMerge.objects.get()
    known.refresh_from_db()
    assert known.traits["plan"] == "free"

    profile_merge_undo(merge=merge)

    anonymous.refresh_from_db()
    known.refresh_from_db()
    contact.refresh_from_db()
    assert anonymous.merged_into_id is None
    assert profile_of("anonymous_id", "a-1") == anonymous
    assert contact.profile_id == anonymous.pk
    assert "plan" not in known.traits
    assert Event.objects.filter(profile=anonymous, type="identify").count() == 1
    with pytest.raises(MergeRefused):
        profile_merge_undo(merge=merge)


def test_two_user_ids_never_merge_automatically(source, settings):
    settings.CDPHUB_SHARED_ID_MAX_USERS = 5
    send(source, {"type": "identify", "userId": "u-1", "traits": {"email": "a@example.com"}})
    send(source, {"type": "identify", "userId": "u-2", "traits": {"email": "b@example.com"}})
    # The same e-mail now arrives with the other user id: a conflict, not a merge.
    send(source, {"type": "identify", "userId": "u-2", "traits": {"email": "a@example.com"}})
    first, second = profile_of("user_id", "u-1"), profile_of("user_id", "u-2")
    assert first != second
    assert not ProfileMerge.objects.exists()
    conflict = MergeConflict.objects.get()
    assert {conflict.profile_id, conflict.other_profile_id} == {first.pk, second.pk}
    assert conflict.identifier_kind == "email"
    # The event went to the user id's own profile, the e-mail stayed where it was.
    assert Event.objects.filter(profile=second).count() == 2
    assert profile_of("email", "a@example.com") == first


def test_new_user_on_shared_device_gets_own_profile(source, settings):
    settings.CDPHUB_SHARED_ID_MAX_USERS = 5
    send(source, {"type": "identify", "userId": "u-1", "anonymousId": "tablet"})
    send(source, {"type": "identify", "userId": "u-2", "anonymousId": "tablet"})
    assert profile_of("user_id", "u-1") != profile_of("user_id", "u-2")
    assert profile_of("anonymous_id", "tablet") == profile_of("user_id", "u-1")
    assert MergeConflict.objects.count() == 1
    assert SharedIdentifier.objects.get(value="tablet").user_ids == ["u-1", "u-2"]


def test_anonymous_id_seen_with_many_users_is_no_merge_key(source, settings):
    settings.CDPHUB_SHARED_ID_MAX_USERS = 2
    for user in ("u-1", "u-2", "u-3"):
        send(source, {"type": "track", "userId": user, "anonymousId": "kiosk", "event": "E"})
    shared = SharedIdentifier.objects.get(value="kiosk")
    assert shared.blocked
    # Past the limit no further conflict is raised for it...
    assert MergeConflict.objects.count() == 1
    # ...and it does not merge a newly known e-mail profile into its owner.
    send(source, {"type": "identify", "anonymousId": "a-9", "traits": {"email": "c@example.com"}})
    send(
        source,
        {"type": "identify", "anonymousId": "kiosk", "traits": {"email": "c@example.com"}},
    )
    assert not ProfileMerge.objects.exists()
    assert profile_of("email", "c@example.com") != profile_of("anonymous_id", "kiosk")


def test_late_old_identify_does_not_overwrite_newer_traits(source):
    send(
        source,
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}, "timestamp": at(10)},
    )
    send(
        source,
        {
            "type": "identify",
            "userId": "u-1",
            "traits": {"plan": "free", "city": "Delft"},
            "timestamp": at(5),
        },
    )
    profile = profile_of("user_id", "u-1")
    assert profile.traits == {"plan": "pro", "city": "Delft"}
    stamp = profile.trait_timestamps["plan"]
    assert Event.objects.filter(message_id=stamp["message_id"], properties__plan="pro").exists()


def test_traits_in_one_batch_apply_in_time_order(source):
    send(
        source,
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}, "timestamp": at(10)},
        {"type": "identify", "userId": "u-1", "traits": {"plan": "free"}, "timestamp": at(5)},
    )
    assert profile_of("user_id", "u-1").traits["plan"] == "pro"


def test_set_once_traits_are_not_overwritten(source):
    send(
        source,
        {"type": "identify", "userId": "u-1", "traits": {"$set_once": {"first_source": "ads"}}},
    )
    send(
        source,
        {
            "type": "identify",
            "userId": "u-1",
            "traits": {"$set_once": {"first_source": "email"}, "name": "Anna"},
        },
    )
    assert profile_of("user_id", "u-1").traits == {"first_source": "ads", "name": "Anna"}


def test_manual_merge_and_conflict_decisions(source, settings):
    settings.CDPHUB_SHARED_ID_MAX_USERS = 5
    send(source, {"type": "identify", "userId": "u-1", "anonymousId": "shared"})
    send(source, {"type": "identify", "userId": "u-2", "anonymousId": "shared"})
    conflict = MergeConflict.objects.get()
    merge_conflict_approve(conflict=conflict)
    conflict.refresh_from_db()
    assert conflict.status == MergeConflict.Status.MERGED
    assert profile_of("user_id", "u-1") == profile_of("user_id", "u-2")
    with pytest.raises(MergeRefused):
        merge_conflict_reject(conflict=conflict)
    # Undoing the approved merge puts the decision back to "kept apart".
    profile_merge_undo(merge=conflict.merge)
    conflict.refresh_from_db()
    assert conflict.status == MergeConflict.Status.KEPT_APART
    assert profile_of("user_id", "u-1") != profile_of("user_id", "u-2")
    with pytest.raises(MergeRefused):
        profiles_merge_manual(profile_ids=[profile_of("user_id", "u-1").pk])


def test_rejected_conflict_is_not_raised_again(source, settings):
    settings.CDPHUB_SHARED_ID_MAX_USERS = 5
    send(source, {"type": "identify", "userId": "u-1", "anonymousId": "shared"})
    send(source, {"type": "identify", "userId": "u-2", "anonymousId": "shared"})
    merge_conflict_reject(conflict=MergeConflict.objects.get())
    send(source, {"type": "track", "userId": "u-2", "anonymousId": "shared", "event": "E"})
    assert MergeConflict.objects.get().status == MergeConflict.Status.KEPT_APART


def test_message_without_usable_identifier_is_rejected_at_processing(source):
    # Staged directly (as an older version of the collector could have done).
    PendingMessage.objects.create(
        source=source,
        message_id="m-1",
        type="track",
        payload={"type": "track", "userId": "guest", "event": "E"},
        timestamp=timezone.now(),
        received_at=timezone.now(),
    )
    assert pending_process() == 1
    assert "no usable identifier" in RejectedMessage.objects.get().reason
    assert not Event.objects.exists()


def test_stopped_processing_loses_nothing(source):
    messages_collect(
        source_id=source.pk,
        messages=[{"type": "track", "userId": f"u-{i}", "event": "E"} for i in range(25)],
    )
    assert pending_process(batch_size=10, max_batches=1) == 10
    assert PendingMessage.objects.count() == 15
    assert pending_process(batch_size=10) == 15
    assert Event.objects.count() == 25
    assert pending_process() == 0


def test_merge_keeps_the_newer_consent_state_and_undo_restores_it():
    from profiles.resolution.merges import profile_merge

    purpose = Purpose.objects.create(code="sms", name="SMS")
    survivor, merged = Profile.objects.create(), Profile.objects.create()
    now = timezone.now()

    def state(profile, status, when):
        record = ConsentRecord.objects.create(
            profile=profile, purpose=purpose, status=status, method="web_form", occurred_at=when
        )
        return ConsentState.objects.create(
            profile=profile, purpose=purpose, status=status, record=record, updated_at=when
        )

    # The survivor granted long ago, the merged profile withdrew yesterday: withdrawn wins.
    kept = state(survivor, ConsentStatus.GRANTED, now - timedelta(days=30))
    newer = state(merged, ConsentStatus.WITHDRAWN, now - timedelta(days=1))
    merge = profile_merge(survivor_id=survivor.pk, merged_id=merged.pk, reason="test")
    kept.refresh_from_db()
    assert (kept.status, kept.record_id) == (ConsentStatus.WITHDRAWN, newer.record_id)
    assert ConsentRecord.objects.filter(profile=survivor).count() == 2

    profile_merge_undo(merge=merge)
    kept.refresh_from_db()
    assert (kept.status, kept.profile_id) == (ConsentStatus.GRANTED, survivor.pk)
    assert ConsentRecord.objects.filter(profile=merged).count() == 1


def test_merge_keeps_the_survivors_newer_consent_state():
    from profiles.resolution.merges import profile_merge

    purpose = Purpose.objects.create(code="ads", name="Ads")
    survivor, merged = Profile.objects.create(), Profile.objects.create()
    now = timezone.now()
    for profile, status, age in ((survivor, "denied", 1), (merged, "granted", 10)):
        record = ConsentRecord.objects.create(
            profile=profile, purpose=purpose, status=status, method="web_form"
        )
        ConsentState.objects.create(
            profile=profile,
            purpose=purpose,
            status=status,
            record=record,
            updated_at=now - timedelta(days=age),
        )
    profile_merge(survivor_id=survivor.pk, merged_id=merged.pk, reason="test")
    assert ConsentState.objects.get(profile=survivor).status == "denied"


def test_undo_gives_back_the_events_that_arrived_after_the_merge(source):
    # Given a known person and an anonymous visitor merged by a login on the visitor's browser
    send(source, {"type": "identify", "userId": "u-1", "traits": {"email": "anna@example.com"}})
    known = profile_of("user_id", "u-1")
    send(source, {"type": "page", "anonymousId": "a-1", "name": "Home"})
    anonymous = profile_of("anonymous_id", "a-1")
    send(source, {"type": "track", "anonymousId": "a-1", "userId": "u-1", "event": "Login"})
    merge = ProfileMerge.objects.get()

    # and, after the merge, a visit with only the browser's id and an order with the user id
    send(source, {"type": "page", "anonymousId": "a-1", "name": "Sale"})
    send(source, {"type": "track", "anonymousId": "a-1", "userId": "u-1", "event": "Order"})
    assert Event.objects.filter(profile=known).count() == 5

    # When the merge is undone
    profile_merge_undo(merge=merge)

    # Then the browser's events (before and after the merge) are the visitor's again, and the
    # events that carried the user id stay with the known person
    assert set(Event.objects.filter(profile=anonymous).values_list("name", flat=True)) == {
        "Home",
        "Sale",
    }
    assert set(Event.objects.filter(profile=known).values_list("name", flat=True)) == {
        "",
        "Login",
        "Order",
    }
    sale = Event.objects.get(name="Sale")
    assert (sale.user_id, sale.anonymous_id) == ("", "a-1")
