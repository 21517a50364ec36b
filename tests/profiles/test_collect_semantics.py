"""The Segment spec's meaning of each call, whatever the SDK that sends it."""

from __future__ import annotations

import pytest

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, MergeConflict, Profile
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


def collect(source, *messages: dict) -> None:
    messages_collect(source_id=source.pk, messages=list(messages))
    pending_process()


def test_alias_of_an_earlier_user_id_queues_a_conflict_and_creates_no_anonymous_id(client):
    source = SourceFactory()
    collect(source, {"type": "identify", "userId": "old-id", "traits": {"plan": "pro"}})
    collect(source, {"type": "alias", "userId": "new-id", "previousId": "old-id"})

    assert not Identity.objects.filter(kind="anonymous_id").exists()
    old = Identity.objects.get(kind="user_id", value="old-id").profile
    new = Identity.objects.get(kind="user_id", value="new-id").profile
    assert old != new  # two user ids never merge automatically
    conflict = MergeConflict.objects.get()
    assert {conflict.profile_id, conflict.other_profile_id} == {old.pk, new.pk}
    assert conflict.identifier_kind == "user_id"
    assert conflict.identifier_value == "old-id"


def test_alias_of_a_user_id_seen_earlier_in_the_same_batch_is_a_user_id():
    source = SourceFactory()
    collect(
        source,
        {"type": "identify", "userId": "old-id"},
        {"type": "alias", "userId": "new-id", "previousId": "old-id"},
    )
    assert not Identity.objects.filter(kind="anonymous_id").exists()
    assert MergeConflict.objects.count() == 1


def test_alias_of_an_anonymous_id_still_merges():
    source = SourceFactory()
    collect(source, {"type": "page", "anonymousId": "anon-1", "name": "Home"})
    collect(source, {"type": "alias", "userId": "u-1", "previousId": "anon-1"})
    profile = Identity.objects.get(kind="user_id", value="u-1").profile
    assert Identity.objects.get(kind="anonymous_id", value="anon-1").profile == profile
    assert Profile.objects.active().count() == 1
    assert not MergeConflict.objects.exists()


@pytest.mark.parametrize("call", ["page", "screen"])
def test_top_level_category_is_stored_like_analytics_js_stores_it(call):
    source = SourceFactory()
    collect(
        source,
        # Segment's and RudderStack's server SDKs: category beside the name
        {"type": call, "userId": "u", "name": "Jackets", "category": "Shop", "messageId": "a"},
        # analytics.js: category among the properties
        {
            "type": call,
            "userId": "u",
            "name": "Jackets",
            "properties": {"category": "Shop"},
            "messageId": "b",
        },
    )
    first, second = Event.objects.order_by("message_id")
    assert first.properties == second.properties == {"category": "Shop"}
    assert first.name == second.name == "Jackets"


def test_category_among_the_properties_wins_over_the_top_level_one():
    source = SourceFactory()
    collect(
        source,
        {"type": "page", "userId": "u", "category": "Top", "properties": {"category": "Own"}},
    )
    assert Event.objects.get().properties == {"category": "Own"}
