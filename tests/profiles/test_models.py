import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from profiles.models import Event, Identity, SeenMessage
from profiles.selectors import profile_resolve
from tests.factories import EventFactory, IdentityFactory, ProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db


def test_identity_value_is_unique_per_kind():
    IdentityFactory(kind=Identity.Kind.EMAIL, value="anna@example.com")

    with pytest.raises(IntegrityError), transaction.atomic():
        IdentityFactory(kind=Identity.Kind.EMAIL, value="anna@example.com")


def test_same_value_may_exist_for_another_kind():
    IdentityFactory(kind=Identity.Kind.EMAIL, value="42")
    IdentityFactory(kind=Identity.Kind.USER_ID, value="42")

    assert Identity.objects.filter(value="42").count() == 2


def test_a_seen_message_id_is_unique_per_source():
    # De-duplication's key (the event table, partitioned by time, has no unique index).
    source, other = SourceFactory(), SourceFactory()
    now = timezone.now()
    SeenMessage.objects.create(source=source, message_id="m-1", seen_at=now, timestamp=now)
    SeenMessage.objects.create(
        source=other, message_id="m-1", seen_at=now, timestamp=now
    )  # may reuse it

    with pytest.raises(IntegrityError), transaction.atomic():
        SeenMessage.objects.create(source=source, message_id="m-1", seen_at=now, timestamp=now)


def test_merged_profiles_resolve_to_the_survivor_through_chains():
    survivor = ProfileFactory()
    middle = ProfileFactory(merged_into=survivor)
    first = ProfileFactory(merged_into=middle)

    assert profile_resolve(first.pk) == survivor
    assert profile_resolve(survivor.pk) == survivor
    assert profile_resolve(999_999_999) is None


def test_active_profiles_exclude_merged_ones():
    survivor = ProfileFactory()
    ProfileFactory(merged_into=survivor)

    assert list(type(survivor).objects.active()) == [survivor]


def test_events_follow_their_profile_and_protect_their_source_without_database_keys():
    # The event table has no database-level foreign keys: the ORM must keep both rules.
    event = EventFactory()
    with pytest.raises(ProtectedError):
        event.source.delete()
    event.profile.delete()
    assert not Event.objects.filter(pk=event.pk).exists()
