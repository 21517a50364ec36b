"""Audiences in the rule language over visitors: categories, attributes, recency, page events
through the anonymous profile, and CDP segments through consented links."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Audience, AudienceMembership
from audiences.rules import VISITORS
from audiences.services import audience_preview, audience_refresh, audience_rule_errors
from profiles.models import Segment, SegmentMembership
from profiles.segments.rules import rule_queryset
from tests.factories import (
    CategoryFactory,
    DataProviderFactory,
    EventFactory,
    IdentityFactory,
    ProfileFactory,
    VisitorFactory,
    VisitorTraitHitFactory,
)

pytestmark = pytest.mark.django_db


def keys(rule) -> set[str]:
    return set(rule_queryset(rule, target=VISITORS).values_list("key", flat=True))


@pytest.fixture
def visitors():
    now = timezone.now()
    hiker = VisitorFactory(key="hiker", country="NL", device_type="mobile")
    skier = VisitorFactory(key="skier", country="DE", device_type="desktop")
    stale = VisitorFactory(key="stale", country="NL", last_seen_at=now - timedelta(days=40))
    outdoor, ski = CategoryFactory(code="OUTDOOR"), CategoryFactory(code="SKI")
    acme = DataProviderFactory(name="Acme")
    VisitorTraitHitFactory(visitor=hiker, category=outdoor, provider=acme)
    VisitorTraitHitFactory(visitor=skier, category=ski, provider=acme)
    # an expired hit counts for nothing
    VisitorTraitHitFactory(
        visitor=stale, category=outdoor, provider=acme, expires_at=now - timedelta(days=1)
    )
    return hiker, skier, stale


def test_category_leaf_reads_live_hits_only(visitors):
    assert keys({"category": "OUTDOOR"}) == {"hiker"}
    assert keys({"category": "OUTDOOR", "provider": "Other Data"}) == set()


def test_attributes_and_recency(visitors):
    assert keys({"visitor": "country", "op": "eq", "value": "nl"}) == {"hiker", "stale"}
    assert keys({"visitor": "device_type", "op": "in", "value": ["desktop", "tv"]}) == {"skier"}
    assert keys({"visitor": "last_seen_at", "within_days": 30}) == {"hiker", "skier"}
    assert keys(
        {"all": [{"visitor": "country", "value": "NL"}, {"not": {"category": "OUTDOOR"}}]}
    ) == {"stale"}


def test_page_events_count_through_the_anonymous_profile(visitors):
    hiker, _, _ = visitors
    anonymous = ProfileFactory(traits={})
    IdentityFactory(profile=anonymous, kind="anonymous_id", value=hiker.key)
    for _ in range(3):
        EventFactory(
            profile=anonymous,
            type="page",
            name="Jackets",
            properties={"url": "https://shop.example/jackets"},
        )

    assert keys({"page": "/jackets", "count": {"op": "gte", "value": 3}, "within_days": 7}) == {
        "hiker"
    }
    assert keys({"page": "/jackets", "count": {"op": "gte", "value": 4}}) == set()


def test_segment_leaf_follows_consented_links(visitors):
    hiker, skier, _ = visitors
    member = ProfileFactory()
    segment = Segment.objects.create(name="Loyal", kind="static")
    SegmentMembership.objects.create(segment=segment, profile=member, entered_at=timezone.now())
    hiker.profile = member
    hiker.save()

    assert keys({"segment": segment.pk}) == {"hiker"}


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"category": ""}, "category"),
        ({"visitor": "email", "op": "eq", "value": "x"}, "visitor"),
        ({"visitor": "country", "op": "gt", "value": "NL"}, "visitor.op"),
        (
            {"all": [{"category": "A"}, {"visitor": "last_seen_at", "within_days": 0}]},
            "all[1].visitor.within_days",
        ),
        ({"trait": "country", "value": "NL"}, ""),  # a profile leaf, not a visitor one
        ({"category": "A", "colour": "red"}, "category.colour"),
    ],
)
def test_bad_rules_are_refused_with_the_path(rule, path):
    errors = audience_rule_errors(rule)

    assert errors
    assert errors[0].startswith(f"{path}:") or (path == "" and "unknown condition" in errors[0])


def test_refresh_replaces_members_and_preview_estimates(visitors):
    audience = Audience.objects.create(name="Outdoor", rule={"category": "OUTDOOR"})

    preview = audience_preview(rule=audience.rule)
    size = audience_refresh(audience=audience)

    assert preview["count"] == size == 1
    assert preview["sample"][0]["key"] == "hiker"
    assert list(AudienceMembership.objects.values_list("visitor__key", flat=True)) == ["hiker"]
    audience.rule = {"visitor": "country", "value": "DE"}
    audience.save()
    audience_refresh(audience=audience)
    assert list(AudienceMembership.objects.values_list("visitor__key", flat=True)) == ["skier"]


def test_api_preview_and_build(api_client_with_scopes, visitors):
    client = api_client_with_scopes("audiences:read", "audiences:write")

    preview = client.post(
        "/api/audiences/audiences/preview/", {"rule": {"category": "SKI"}}, format="json"
    )
    bad = client.post("/api/audiences/audiences/preview/", {"rule": {"category": 5}}, format="json")
    created = client.post(
        "/api/audiences/audiences/", {"name": "Skiers", "rule": {"category": "SKI"}}, format="json"
    )
    built = client.post(f"/api/audiences/audiences/{created.json()['id']}/build/")

    assert preview.status_code == 200 and preview.json()["count"] == 1
    assert bad.status_code == 400 and "category" in str(bad.json()["errors"])
    assert created.status_code == 201
    assert built.json() == {"size": 1}
