from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from cdphub.hashing import secret_hash
from consent.models import ConsentRecord, ConsentState, Purpose
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    PendingMessage,
    Profile,
    RejectedMessage,
    Segment,
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


# --- audiences -------------------------------------------------------------------------------


class VisitorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "audiences.Visitor"

    key = factory.Sequence(lambda n: f"cookie-{n}")
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=90))
    country = "NL"
    device_type = "mobile"


class DataProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "audiences.DataProvider"
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Provider {n}")
    retention_days = 30


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "audiences.Category"
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"CAT-{n}")
    name = factory.Sequence(lambda n: f"Category {n}")
    kind = "interest"
    tier = 1


class VisitorTraitHitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "audiences.VisitorTraitHit"

    visitor = factory.SubFactory(VisitorFactory)
    category = factory.SubFactory(CategoryFactory)
    provider = factory.SubFactory(DataProviderFactory)
    observed_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(
        lambda hit: hit.observed_at + timedelta(days=hit.provider.retention_days)
    )


class AudienceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "audiences.Audience"

    name = factory.Sequence(lambda n: f"Audience {n}")
    rule = factory.LazyFunction(lambda: {"category": "CAT-0"})


# --- crm ---------------------------------------------------------------------------------------


class StaffUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"rep{n}")
    is_staff = True


class SalesTeamFactory(factory.django.DjangoModelFactory):
    """``SalesTeamFactory(members=[a, b], manager=lead, visibility="own")``."""

    class Meta:
        model = "crm.SalesTeam"
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Team {n}")

    @factory.post_generation
    def members(self, create, extracted, **kwargs):
        if create and extracted:
            self.members.set(extracted)


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Tag"

    name = factory.Sequence(lambda n: f"tag-{n}")


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Company"

    name = factory.Sequence(lambda n: f"Company {n}")
    domain = factory.Sequence(lambda n: f"company{n}.example.com")
    industry = "Retail"
    country = "NL"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Contact"

    first_name = "Anna"
    last_name = factory.Sequence(lambda n: f"Jansen {n}")
    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    company = factory.SubFactory(CompanyFactory)


class PipelineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Pipeline"

    name = factory.Sequence(lambda n: f"Pipeline {n}")


class StageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Stage"

    pipeline = factory.SubFactory(PipelineFactory)
    name = factory.Sequence(lambda n: f"Stage {n}")
    order = factory.Sequence(lambda n: n)
    probability = 20


class DealFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Deal"

    name = factory.Sequence(lambda n: f"Deal {n}")
    stage = factory.SubFactory(StageFactory)
    pipeline = factory.SelfAttribute("stage.pipeline")
    company = factory.SubFactory(CompanyFactory)
    contact = factory.SubFactory(ContactFactory, company=factory.SelfAttribute("..company"))
    amount = 1000
    probability = 20


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Activity"

    kind = "call"
    subject = factory.Sequence(lambda n: f"Call {n}")
    contact = factory.SubFactory(ContactFactory)


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Ticket"

    subject = factory.Sequence(lambda n: f"Ticket {n}")
    contact = factory.SubFactory(ContactFactory)


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "crm.Task"

    title = factory.Sequence(lambda n: f"Task {n}")
    contact = factory.SubFactory(ContactFactory)


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
