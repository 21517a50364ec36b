from __future__ import annotations

import factory
from django.utils import timezone

from cdphub.hashing import secret_hash
from profiles.models import Event, Identity, Profile, Source


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


# --- consent (purposes are seeded by migration; consent records are written through
# consent.services.consent_record, never by a factory, so the current state stays derived) ---


class DataSubjectRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "consent.DataSubjectRequest"

    kind = "access"
    subject_email = factory.Sequence(lambda n: f"subject{n}@example.com")


class ProcessingActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "consent.ProcessingActivity"

    name = factory.Sequence(lambda n: f"Processing activity {n}")
    lawful_basis = "consent"
    data_subjects = "Customers"
    data_categories = "Contact data"
