import json
import random

import pytest
from django.core.management import call_command
from django.db.models import Count, Max, OuterRef, Subquery
from django.utils import timezone

from audiences.models import (
    Audience,
    AudienceMembership,
    Category,
    DataProvider,
    Visitor,
    VisitorTraitHit,
)
from cdphub.demo.people import PeopleGenerator
from cdphub.demo.seed import demo_data_seed
from consent.models import ConsentRecord, ConsentState, Purpose
from crm.models import Activity, Company, Contact, Deal, Stage, Task, Ticket
from profiles.models import Event, Identity, Profile, Segment, SegmentMembership, Source
from profiles.resolution.normalize import normalize_identifier

pytestmark = pytest.mark.django_db

SEEDED_MODELS = (
    Source, Profile, Identity, Event, Company, Contact, Stage, Deal, Activity, Ticket, Task,
    Purpose, ConsentRecord, ConsentState, DataProvider, Category, Visitor, VisitorTraitHit,
    Segment, SegmentMembership, Audience, AudienceMembership,
)  # fmt: skip


@pytest.fixture
def seeded():
    return demo_data_seed(profiles=150)


def test_every_app_gets_rows(seeded):
    empty = [model.__name__ for model in SEEDED_MODELS if not model.objects.exists()]
    assert empty == []
    assert Profile.objects.count() == 150


def test_second_run_adds_nothing(seeded):
    before = {model: model.objects.count() for model in SEEDED_MODELS}

    assert demo_data_seed(profiles=150) == {}
    call_command("seed_demo", "--profiles", "150")

    assert {model: model.objects.count() for model in SEEDED_MODELS} == before


def test_same_seed_gives_same_people():
    def people(seed):
        generator = PeopleGenerator(random.Random(seed), timezone.now(), sources={})
        return [(p.email, p.phone, p.anonymous_id, p.plan) for p in generator.people_make(30)]

    assert people(7) == people(7)
    assert people(7) != people(8)


def test_consent_state_is_the_latest_record(seeded):
    latest = ConsentRecord.objects.filter(
        profile=OuterRef("profile"), purpose=OuterRef("purpose")
    ).order_by("-occurred_at", "-id")
    states = ConsentState.objects.annotate(latest_status=Subquery(latest.values("status")[:1]))
    assert states.exists()
    assert all(s.status == s.latest_status for s in states)
    assert all(s.record.profile_id == s.profile_id for s in states.select_related("record"))
    pairs = ConsentRecord.objects.values("profile", "purpose").distinct().count()
    assert ConsentState.objects.count() == pairs
    assert Purpose.objects.filter(code="advertising").exists()


def test_identities_are_normalised_and_match_traits(seeded):
    identities = Identity.objects.exclude(kind="crm_contact").select_related("profile")
    assert {i.kind for i in identities} >= {"email", "phone", "user_id", "anonymous_id"}
    for identity in identities:
        assert identity.value == normalize_identifier(identity.kind, identity.value)
        if identity.kind in ("email", "phone"):
            assert identity.profile.traits[identity.kind] == identity.value


def test_contacts_link_to_profiles_by_email(seeded):
    contacts = Contact.objects.select_related("profile")
    assert contacts.exists()
    assert all(c.profile.traits["email"] == c.email for c in contacts)


def test_orders_carry_revenue_and_visitors_link_only_with_consent(seeded):
    orders = Event.objects.filter(name="Order Completed")
    assert orders.exists()
    assert all(order.properties["revenue"] > 0 for order in orders)
    linked = Visitor.objects.filter(profile__isnull=False)
    allowed = ConsentState.objects.filter(
        status="granted", purpose__code__in=["advertising", "personalisation"]
    ).values("profile")
    assert not linked.exclude(profile__in=allowed).exists()


def test_trait_hits_expire_after_their_providers_window(seeded):
    for hit in VisitorTraitHit.objects.select_related("provider")[:200]:
        assert (hit.expires_at - hit.observed_at).days == hit.provider.retention_days


def test_repeat_visitors_exist(seeded):
    most = Event.objects.values("profile").annotate(n=Count("id")).aggregate(Max("n"))["n__max"]
    assert most > 10


def test_invalid_profile_count_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        demo_data_seed(profiles=0)


def test_the_readme_rule_example_is_a_demo_segment_that_matches_people():
    from django.conf import settings

    from cdphub.demo.seed import EXAMPLE_RULE, EXAMPLE_SEGMENT

    readme = (settings.BASE_DIR / "README.md").read_text()
    example = readme.split("## The rule language", 1)[1].split("```json", 1)[1].split("```")[0]
    assert json.loads(example) == EXAMPLE_RULE

    counts = demo_data_seed(profiles=400)

    segment = Segment.objects.get(name=EXAMPLE_SEGMENT)
    assert segment.rule == EXAMPLE_RULE and segment.status == "ready"
    assert counts["example_segment_members"] == segment.size > 0


def test_the_demo_offers_the_rule_builder_what_its_events_hold(seeded):
    from profiles.models import ObservedField
    from profiles.segments.builder import rule_warnings

    assert ObservedField.objects.filter(kind="property", event="Product Viewed", key="category")
    assert ObservedField.objects.filter(kind="trait", key="country").exists()
    from cdphub.demo.seed import EXAMPLE_RULE

    assert rule_warnings(EXAMPLE_RULE) == []
