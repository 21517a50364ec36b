"""The rule builder's server side: every leaf describes itself, the vocabulary comes from what
processing recorded, and conditions on what never occurred get warnings."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from consent.models import Purpose
from consent.services import purposes_ensure_defaults
from crm.models import CustomField
from profiles.models import ComputedTrait, ObservedField
from profiles.segments.builder import rule_vocabulary, rule_warnings
from profiles.segments.rules.profile_target import PROFILES
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db

SHAPES = {"field", "choice", "event", "page"}


def observe(kind, event="", key="", types=(), examples=()):
    now = timezone.now()
    return ObservedField.objects.create(
        kind=kind,
        event=event,
        key=key,
        types=list(types),
        examples=list(examples),
        first_seen_at=now,
        last_seen_at=now,
    )


@pytest.fixture
def observed():
    observe("event", "Order Completed", types=["track"])
    observe("property", "Order Completed", "total", ["number"], [40, 12.5])
    observe("property", "Order Completed", "shipping", ["object"])
    observe("property", "Order Completed", "shipping.method", ["string"], ["post"])
    observe("trait", key="plan", types=["string"], examples=["pro", "free"])
    observe("trait", key="birthday", types=["string"], examples=["1990-04-01", "2001-12-24"])


def test_every_leaf_of_the_rule_language_is_offered_by_the_builder():
    """A leaf another app registers without ``describe`` would only be editable as JSON."""
    vocabulary = rule_vocabulary(PROFILES)

    assert set(vocabulary["leaves"]) == set(PROFILES.leaves)
    for name, leaf in vocabulary["leaves"].items():
        assert leaf["shape"] in SHAPES, name
        assert leaf["label"] and leaf["help"], name


def test_events_properties_and_traits_come_from_what_processing_recorded(observed):
    leaves = rule_vocabulary(PROFILES)["leaves"]

    (order,) = leaves["event"]["events"]
    assert order["name"] == "Order Completed"
    assert [p["key"] for p in order["properties"]] == ["shipping", "shipping.method", "total"]
    total = order["properties"][2]
    assert (total["types"], total["examples"]) == (["number"], [40, 12.5])
    traits = {f["key"]: f for f in leaves["trait"]["fields"]}
    assert traits["plan"]["examples"] == ["pro", "free"]
    assert traits["birthday"]["format"] == "date" and "format" not in traits["plan"]
    assert leaves["trait"]["free"] is True


def test_choices_and_fields_of_the_other_leaves():
    purposes_ensure_defaults()
    purposes = {purpose.code: purpose for purpose in Purpose.objects.all()}
    segment = SegmentFactory(name="Loyal")
    ComputedTrait.objects.create(
        key="orders_placed", name="Orders placed", kind="count", event_name="Order Completed"
    )
    CustomField.objects.create(model="contact", label="Renewal", key="renewal", type="date")

    leaves = rule_vocabulary(PROFILES)["leaves"]

    assert [segment.pk, "Loyal"] in leaves["segment"]["choices"]
    assert ["email_marketing", purposes["email_marketing"].name] in leaves["consent"]["choices"]
    computed = {f["key"]: f["label"] for f in leaves["computed"]["fields"]}
    assert computed["orders_placed"] == "Orders placed" and "lifetime_value" in computed
    crm = {f["key"]: f for f in leaves["crm"]["fields"]}
    assert "customer" in crm["lifecycle_stage"]["examples"]
    assert crm["custom.renewal"]["format"] == "date"


def test_conditions_on_what_never_occurred_get_warnings(observed):
    rule = {
        "all": [
            {"event": "Order Completed", "where": [{"property": "totl", "op": "gt", "value": 1}]},
            {"event": "Order Complete"},
            {"not": {"any": [{"trait": "plna", "op": "exists"}]}},
            {"trait": "plan", "op": "eq", "value": "pro"},
            {"event": "Order Completed", "where": [{"property": "shipping.method.code"}]},
        ]
    }

    assert rule_warnings(rule) == [
        "'Order Completed' events have never had a property 'totl'.",
        "No event named 'Order Complete' has been received yet.",
        "No profile has been sent a trait 'plna' yet.",
    ]
    assert rule_warnings({"trait": "plan"}) == []


def test_the_live_count_answers_with_the_warnings(admin_client, observed):
    response = admin_client.post(
        "/admin/profiles/segment/preview/",
        json.dumps({"rule": {"event": "Order Complete"}}),
        content_type="application/json",
    )

    body = response.json()
    assert body["count"] == 0
    assert body["warnings"] == ["No event named 'Order Complete' has been received yet."]


def test_the_segment_page_carries_the_vocabulary_and_the_builder(admin_client, observed):
    page = admin_client.get("/admin/profiles/segment/add/").content.decode()

    assert 'id="rule-vocabulary"' in page and "Order Completed" in page
    assert "cdphub/rule-builder.js" in page


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"rule"'])
def test_a_live_count_request_that_is_not_a_json_object_is_a_400(admin_client, body):
    response = admin_client.post(
        "/admin/profiles/segment/preview/", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["errors"][0] in (
        "expected a JSON object",
        "the request is not valid JSON",
    )
