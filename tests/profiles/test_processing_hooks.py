"""What processing does for the other apps: consent from events, DMP visitors, computed traits
and segments of the touched profiles, and nothing at all for erased people."""

from __future__ import annotations

import pytest

from audiences.models import Visitor
from consent.hashing import suppression_hash
from consent.models import ConsentRecord, ConsentState, Suppression
from profiles.models import Event, Identity, PendingMessage, Profile, RejectedMessage
from tests.factories import SourceFactory
from tests.profiles.test_resolution import send

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def source():
    return SourceFactory(name="Web shop")


def test_consent_updated_event_writes_the_ledger_and_state(source):
    send(
        source,
        {
            "type": "track",
            "userId": "u-1",
            "event": "Consent Updated",
            "properties": {"purpose": "email_marketing", "status": "granted"},
            "context": {"ip": "203.0.113.9", "userAgent": "Firefox/130"},
        },
    )

    profile = Identity.objects.get(kind="user_id", value="u-1").profile
    record = ConsentRecord.objects.get(profile=profile)
    assert (record.purpose.code, record.status, record.ip_address) == (
        "email_marketing",
        "granted",
        "203.0.113.9",
    )
    assert ConsentState.objects.get(profile=profile).status == "granted"


def test_ordinary_events_write_no_consent(source):
    send(source, {"type": "track", "userId": "u-1", "event": "Order Completed"})

    assert not ConsentRecord.objects.exists()


def test_anonymous_events_make_visitors(source):
    send(
        source,
        {
            "type": "page",
            "anonymousId": "cookie-42",
            "name": "Home",
            "context": {
                "locale": "nl-NL",
                "device": {"type": "mobile", "id": "dev-7"},
                "userAgent": "Mozilla/5.0 Chrome/131.0 Safari/537.36",
            },
        },
    )

    cookie = Visitor.objects.get(key_kind="cookie", key="cookie-42")
    assert (cookie.country, cookie.device_type, cookie.browser) == ("NL", "mobile", "Chrome")
    assert Visitor.objects.filter(key_kind="device", key="dev-7").exists()
    assert cookie.profile_id is None  # nobody known: no link


def test_processing_updates_computed_traits_of_touched_profiles(
    source, django_capture_on_commit_callbacks
):
    order = {"type": "track", "userId": "u-1", "event": "Order Completed"}
    with django_capture_on_commit_callbacks(execute=True):
        send(
            source,
            {**order, "properties": {"revenue": 40}},
            {**order, "properties": {"revenue": 60}},
        )

    traits = Identity.objects.get(kind="user_id", value="u-1").profile.computed_traits
    assert traits["order_count"] == 2
    assert traits["lifetime_value"] == 100


def test_messages_of_erased_people_are_dropped_without_their_content(source):
    Suppression.objects.create(
        identifier_kind="email", value_hash=suppression_hash("email", "erased@example.com")
    )

    send(
        source,
        {"type": "identify", "userId": "u-9", "traits": {"email": "Erased@Example.com"}},
        {"type": "identify", "userId": "u-10", "traits": {"email": "kept@example.com"}},
    )

    assert not Identity.objects.filter(value__in=["u-9", "erased@example.com"]).exists()
    assert Identity.objects.filter(value="kept@example.com").exists()
    assert Profile.objects.count() == 1 and Event.objects.count() == 1
    rejected = RejectedMessage.objects.get()
    assert rejected.payload == {} and "erased on request" in rejected.reason
    assert not PendingMessage.objects.exists()
