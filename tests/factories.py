from __future__ import annotations

import factory
from django.utils import timezone

from cdphub.hashing import secret_hash
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    PendingMessage,
    Profile,
    RejectedMessage,
    Source,
)


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    name = factory.Sequence(lambda n: f"Source {n}")
    write_key_hash = factory.Sequence(lambda n: secret_hash(f"wk_test_{n}"))
    write_key_prefix = factory.Sequence(lambda n: f"wk_test_{n}"[:9])


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    traits = factory.LazyFunction(
        lambda: {"firstName": "Anna", "lastName": "de Vries", "email": "anna@example.com"}
    )
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    profile = factory.SubFactory(ProfileFactory)
    kind = Identity.Kind.EMAIL
    value = factory.Sequence(lambda n: f"person{n}@example.com")
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    profile = factory.SubFactory(ProfileFactory)
    source = factory.SubFactory(SourceFactory)
    type = Event.Type.TRACK
    name = "Product Viewed"
    properties = factory.LazyFunction(lambda: {"sku": "JKT-1"})
    message_id = factory.Sequence(lambda n: f"msg-{n}")
    timestamp = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)


class PendingMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PendingMessage

    source = factory.SubFactory(SourceFactory)
    message_id = factory.Sequence(lambda n: f"pending-{n}")
    type = Event.Type.TRACK
    payload = factory.LazyAttribute(
        lambda o: {"type": o.type, "userId": "user-1", "event": "Viewed", "messageId": o.message_id}
    )
    timestamp = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)


class RejectedMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RejectedMessage

    source = factory.SubFactory(SourceFactory)
    message_id = factory.Sequence(lambda n: f"rejected-{n}")
    type = Event.Type.TRACK
    payload = factory.LazyAttribute(lambda o: {"type": o.type, "event": "Viewed"})
    reason = "userId or anonymousId is required (and must not be a placeholder)"
    received_at = factory.LazyFunction(timezone.now)


class MergeConflictFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MergeConflict

    profile = factory.SubFactory(ProfileFactory)
    other_profile = factory.SubFactory(ProfileFactory)
    identifier_kind = Identity.Kind.EMAIL
    identifier_value = factory.Sequence(lambda n: f"shared{n}@example.com")
    reason = "email links user ids u-1 and u-2"
