from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Visitor
from audiences.services import VisitorSighting, visitor_links_sync, visitors_observe
from consent.models import ConsentRecord, ConsentState, Purpose
from tests.factories import IdentityFactory, ProfileFactory, VisitorFactory

pytestmark = pytest.mark.django_db


def consent_set(profile, code, status):
    purpose = Purpose.objects.get_or_create(code=code, defaults={"name": code})[0]
    record = ConsentRecord.objects.create(
        profile=profile, purpose=purpose, status=status, method="cmp"
    )
    ConsentState.objects.update_or_create(
        profile=profile,
        purpose=purpose,
        defaults={"status": status, "record": record, "updated_at": timezone.now()},
    )


@pytest.fixture
def person():
    profile = ProfileFactory()
    IdentityFactory(profile=profile, kind="anonymous_id", value="anon-1")
    IdentityFactory(profile=profile, kind="device_id", value="dev-1")
    VisitorFactory(key_kind="cookie", key="anon-1")
    VisitorFactory(key_kind="device", key="dev-1")
    VisitorFactory(key_kind="cookie", key="someone-else")
    return profile


def test_visitors_link_only_with_consent(person):
    assert visitor_links_sync(profile=person) == {"linked": 0, "unlinked": 0}
    assert not Visitor.objects.filter(profile=person).exists()

    consent_set(person, "personalisation", "granted")
    assert visitor_links_sync(profile=person) == {"linked": 2, "unlinked": 0}
    assert set(Visitor.objects.filter(profile=person).values_list("key", flat=True)) == {
        "anon-1",
        "dev-1",
    }


def test_withdrawal_unlinks(person):
    consent_set(person, "advertising", "granted")
    visitor_links_sync(profile=person)
    consent_set(person, "advertising", "withdrawn")
    assert visitor_links_sync(profile=person) == {"linked": 0, "unlinked": 2}
    assert not Visitor.objects.filter(profile__isnull=False).exists()


def test_a_visitor_linked_to_someone_else_is_not_taken(person):
    other = ProfileFactory()
    Visitor.objects.filter(key="dev-1").update(profile=other)
    consent_set(person, "advertising", "granted")
    assert visitor_links_sync(profile=person)["linked"] == 1
    assert Visitor.objects.get(key="dev-1").profile == other


def test_sightings_create_and_refresh_visitors():
    now = timezone.now()
    visitors_observe(
        sightings=[
            VisitorSighting("cookie", "ck-1", now - timedelta(days=3), "nl", "mobile", "Safari"),
            VisitorSighting("cookie", "ck-1", now - timedelta(days=1)),
        ]
    )
    visitor = Visitor.objects.get(key="ck-1")
    assert visitor.last_seen_at == now - timedelta(days=1)
    assert visitor.expires_at == now - timedelta(days=1) + timedelta(days=90)

    visitors_observe(sightings=[VisitorSighting("cookie", "ck-1", now - timedelta(days=10))])
    visitor.refresh_from_db()
    assert visitor.first_seen_at == now - timedelta(days=10)
    assert visitor.last_seen_at == now - timedelta(days=1)
    assert visitors_observe(sightings=[]) == 0


def test_sightings_keep_known_attributes():
    now = timezone.now()
    visitors_observe(sightings=[VisitorSighting("cookie", "ck-1", now, "nl", "mobile", "Safari")])
    visitors_observe(sightings=[VisitorSighting("cookie", "ck-1", now + timedelta(hours=1))])
    visitor = Visitor.objects.get(key="ck-1")
    assert (visitor.country, visitor.device_type, visitor.browser) == ("NL", "mobile", "Safari")


def test_a_visitor_seen_again_within_minutes_is_not_rewritten_unless_something_is_new():
    now = timezone.now()
    visitors_observe(sightings=[VisitorSighting("cookie", "ck-1", now, "nl", "", "Safari")])
    visitors_observe(sightings=[VisitorSighting("cookie", "ck-1", now + timedelta(minutes=2))])
    visitor = Visitor.objects.get(key="ck-1")
    assert visitor.last_seen_at == now  # two minutes later: same row, no rewrite

    visitors_observe(
        sightings=[VisitorSighting("cookie", "ck-1", now + timedelta(minutes=3), "", "mobile")]
    )
    visitor.refresh_from_db()
    assert (visitor.device_type, visitor.last_seen_at) == ("mobile", now + timedelta(minutes=3))

    visitors_observe(sightings=[VisitorSighting("cookie", "ck-1", now + timedelta(minutes=9))])
    visitor.refresh_from_db()
    assert visitor.last_seen_at == now + timedelta(minutes=9)
    assert visitor.expires_at == now + timedelta(minutes=9) + timedelta(days=90)
