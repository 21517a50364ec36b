from __future__ import annotations

import factory
from django.utils import timezone

from cdphub.hashing import secret_hash
from consent.models import ConsentRecord, ConsentState, Purpose
from profiles.models import Event, Identity, Profile, Segment, Source


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


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    rule = factory.LazyFunction(lambda: {"trait": "country", "op": "eq", "value": "NL"})


class PurposeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Purpose
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"purpose_{n}")
    name = factory.LazyAttribute(lambda purpose: purpose.code.replace("_", " ").title())


def consent_state_create(
    profile: Profile, purpose: Purpose, status: str = "granted"
) -> ConsentState:
    """The current consent of ``profile`` for ``purpose``, with the ledger record behind it."""
    record = ConsentRecord.objects.create(
        profile=profile, purpose=purpose, status=status, method=ConsentRecord.Method.API
    )
    state, _ = ConsentState.objects.update_or_create(
        profile=profile,
        purpose=purpose,
        defaults={"status": status, "record": record, "updated_at": timezone.now()},
    )
    return state
