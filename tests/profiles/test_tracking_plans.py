"""Tracking plans in processing: what conforms is stored untouched; each kind of violation
under each action (allow and flag, omit the offending properties, block the event); events
the plan does not name; counts and examples; and what a plan's schema may say."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consent import registry
from consent.registry import Subject
from consent.retention import purgers
from profiles.ingest import plans
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import (
    Event,
    Identity,
    PendingMessage,
    Profile,
    RejectedMessage,
    TrackingPlan,
    TrackingPlanViolation,
)
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "revenue": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "email": {"type": "string", "format": "email"},
        "products": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "price": {"type": "number"}},
                "required": ["sku"],
            },
        },
    },
    "required": ["order_id", "revenue"],
    "additionalProperties": False,
}
TRAITS_SCHEMA = {
    "type": "object",
    "properties": {"email": {"type": "string", "format": "email"}, "age": {"type": "integer"}},
}


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def source():
    return SourceFactory(name="Web shop")


def plan_for(source, *, violation="allow", unplanned="allow", status="active", **extra):
    return plans.tracking_plan_create(
        name=extra.pop("name", "Shop plan"),
        status=status,
        events=[
            {"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA},
            {"type": "track", "name": "Product Viewed", "schema": {"type": "object"}},
            {"type": "identify", "name": "", "schema": TRAITS_SCHEMA},
        ],
        sources=[
            {"source": source, "violation_action": violation, "unplanned_event_action": unplanned}
        ],
        **extra,
    )


def order(message_id: str, **properties) -> dict:
    return {
        "type": "track",
        "userId": "u-1",
        "messageId": message_id,
        "event": "Order Completed",
        "properties": {"order_id": "o-1", "revenue": 10.5, **properties},
    }


def send(source, *messages) -> None:
    result = messages_collect(source_id=source.pk, messages=[dict(m) for m in messages])
    assert not result.rejected, result.rejected
    pending_process()
    assert not PendingMessage.objects.exists()


def violations() -> dict[tuple[str, str, str], tuple[int, int]]:
    return {
        (v.event_name, v.property, v.kind): (v.count, v.blocked)
        for v in TrackingPlanViolation.objects.all()
    }


def stored(message_id: str) -> dict:
    return Event.objects.get(message_id=message_id).properties


# --- conforming events ----------------------------------------------------------------------------


def test_conforming_events_are_stored_untouched_and_nothing_is_counted(source):
    plan_for(source, violation="block", unplanned="block")
    properties = {"currency": "EUR", "products": [{"sku": "A", "price": 2}]}

    send(
        source,
        order("m-1", **properties),
        {"type": "track", "userId": "u-1", "messageId": "m-2", "event": "Product Viewed"},
        {"type": "identify", "userId": "u-1", "messageId": "m-3", "traits": {"age": 40}},
        {"type": "page", "userId": "u-1", "messageId": "m-4", "name": "Home"},
    )

    assert stored("m-1") == {"order_id": "o-1", "revenue": 10.5, **properties}
    assert Event.objects.count() == 4  # pages are not planned: the plan names none
    assert not TrackingPlanViolation.objects.exists()
    assert not RejectedMessage.objects.exists()


def test_a_draft_plan_is_not_applied(source):
    plan_for(source, violation="block", unplanned="block", status="draft")

    send(source, order("m-1", revenue="lots"), {**order("m-2"), "event": "Unplanned"})

    assert Event.objects.count() == 2
    assert not TrackingPlanViolation.objects.exists()


# --- each kind under each action ------------------------------------------------------------------

WRONG_TYPE = ("m-1", {"revenue": "10.50"}, "revenue", "wrong_type")
BAD_FORMAT = ("m-1", {"email": "not-an-address"}, "email", "wrong_type")
UNPLANNED_PROPERTY = ("m-1", {"coupon": "WINTER"}, "coupon", "unplanned_property")
NESTED = ("m-1", {"products": [{"sku": "A", "price": "2"}]}, "products[].price", "wrong_type")
KINDS = [WRONG_TYPE, BAD_FORMAT, UNPLANNED_PROPERTY, NESTED]


@pytest.mark.parametrize(("message_id", "sent", "path", "kind"), KINDS)
def test_allow_stores_the_event_as_sent_and_counts_the_violation(
    source, message_id, sent, path, kind
):
    plan_for(source, violation="allow")

    send(source, order(message_id, **sent))

    assert stored(message_id) == {"order_id": "o-1", "revenue": 10.5, **sent}
    assert violations() == {("Order Completed", path, kind): (1, 0)}


@pytest.mark.parametrize(("message_id", "sent", "path", "kind"), KINDS)
def test_omit_stores_the_event_without_the_offending_property(source, message_id, sent, path, kind):
    plan_for(source, violation="omit")

    send(source, order(message_id, **sent))

    properties = stored(message_id)
    if path == "products[].price":
        assert properties["products"] == [{"sku": "A"}]
    else:
        assert path not in properties
    assert properties["order_id"] == "o-1"
    assert violations() == {("Order Completed", path, kind): (1, 0)}


@pytest.mark.parametrize(("message_id", "sent", "path", "kind"), KINDS)
def test_block_keeps_the_message_among_the_rejected_with_the_reason(
    source, message_id, sent, path, kind
):
    plan_for(source, violation="block")

    send(source, order(message_id, **sent))

    assert not Event.objects.exists()
    rejected = RejectedMessage.objects.get()
    assert rejected.message_id == message_id
    assert rejected.payload["properties"] == {"order_id": "o-1", "revenue": 10.5, **sent}
    assert rejected.reason.startswith("blocked by the tracking plan 'Shop plan' (version 1): ")
    assert path in rejected.reason
    assert violations() == {("Order Completed", path, kind): (1, 1)}


def test_a_missing_required_property_is_counted_under_every_action(source):
    link = plan_for(source, violation="omit").sources.get()
    missing = order("m-1")
    del missing["properties"]["revenue"]

    send(source, missing)  # omit: nothing to take away, stored as sent
    link.violation_action = "block"
    link.save()
    send(source, {**missing, "messageId": "m-2"})

    assert stored("m-1") == {"order_id": "o-1"}
    assert RejectedMessage.objects.get().message_id == "m-2"
    assert "revenue: missing required property (required)" in RejectedMessage.objects.get().reason
    assert violations() == {("Order Completed", "revenue", "missing_required"): (2, 1)}


def test_unplanned_events_are_allowed_and_flagged_or_blocked(source):
    link = plan_for(source, unplanned="allow").sources.get()
    unplanned = {"type": "track", "userId": "u-1", "messageId": "m-1", "event": "Coupon Used"}

    send(source, unplanned)
    link.unplanned_event_action = "block"
    link.save()
    send(source, {**unplanned, "messageId": "m-2"})

    assert list(Event.objects.values_list("message_id", flat=True)) == ["m-1"]
    rejected = RejectedMessage.objects.get()
    assert "the track event 'Coupon Used' is not planned" in rejected.reason
    assert violations() == {("Coupon Used", "", "unplanned_event"): (2, 1)}


def test_identify_traits_are_checked_and_omitted_traits_never_reach_the_profile(source):
    plan_for(source, violation="omit")

    send(
        source,
        {
            "type": "identify",
            "userId": "u-1",
            "messageId": "m-1",
            "traits": {"email": "anna@example.com", "age": "forty"},
        },
    )

    profile = Profile.objects.get()
    assert profile.traits == {"email": "anna@example.com"}
    assert stored("m-1") == {"email": "anna@example.com"}
    assert violations() == {("", "age", "wrong_type"): (1, 0)}


def test_a_batch_mixing_conforming_and_violating_messages(source):
    plan_for(source, violation="block")
    good = [order(f"ok-{n}", currency="EUR") for n in range(5)]
    bad = [order("bad-1", revenue=-1), order("bad-2", coupon="X")]

    send(source, good[0], bad[0], good[1], good[2], bad[1], good[3], good[4])

    assert sorted(Event.objects.values_list("message_id", flat=True)) == [
        f"ok-{n}" for n in range(5)
    ]
    assert all(stored(f"ok-{n}")["currency"] == "EUR" for n in range(5))
    assert sorted(RejectedMessage.objects.values_list("message_id", flat=True)) == [
        "bad-1",
        "bad-2",
    ]
    assert violations() == {
        ("Order Completed", "revenue", "wrong_type"): (1, 1),
        ("Order Completed", "coupon", "unplanned_property"): (1, 1),
    }


def test_counts_add_up_across_batches_and_keep_the_latest_examples(source):
    plan_for(source)

    for n in range(8):
        send(source, order(f"m-{n}", revenue=str(n)))

    violation = TrackingPlanViolation.objects.get()
    assert (violation.count, violation.blocked) == (8, 0)
    assert [e["message_id"] for e in violation.examples] == ["m-7", "m-6", "m-5", "m-4", "m-3"]
    example = violation.examples[0]
    assert (example["value"], example["expected"]) == ("7", "type: number")
    assert example["profile"] == Profile.objects.get().pk


def test_an_omitted_identifier_trait_identifies_no_one(source):
    staff_only = {"properties": {"email": {"type": "string", "pattern": "@example[.]com$"}}}
    plans.tracking_plan_create(
        name="Staff app",
        status="active",
        events=[{"type": "identify", "schema": staff_only}],
        sources=[{"source": source, "violation_action": "omit"}],
    )
    identify = {"type": "identify", "userId": "u-1", "messageId": "m-1"}

    send(source, {**identify, "traits": {"email": "anna@other.org", "plan": "pro"}})

    profile = Profile.objects.get()
    assert profile.traits == {"plan": "pro"}
    assert list(profile.identities.values_list("kind", flat=True)) == ["user_id"]


def test_a_plan_change_applies_to_the_next_batch(source):
    plan = plan_for(source, violation="block")
    send(source, {**order("m-1"), "event": "Refund Issued"})  # unplanned: allowed

    plans.tracking_plan_update(
        plan=plan,
        events=[{"type": "track", "name": "Refund Issued", "schema": {"required": ["amount"]}}],
    )
    send(source, {**order("m-2"), "event": "Refund Issued"})

    assert plan.version == 2
    assert RejectedMessage.objects.get().message_id == "m-2"


# --- writing plans --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"properties": {"price": {"type": "money"}}},
            "at properties.price.type: 'money' is not valid under any of the given schemas",
        ),
        ({"properties": {"sku": {"pattern": "[A-"}}}, "at properties.sku.pattern: '[A-' is not"),
        ({"required": "sku"}, "at required: 'sku' is not of type 'array'"),
        ({"type": "string"}, "at type: the properties of an event are a JSON object"),
        (
            {"properties": {"phone": {"format": "phone"}}},
            "at properties.phone.format: the format 'phone' is not checked here",
        ),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "'#/$defs/missing' points at nothing"),
        (["not", "a", "schema"], "must be a JSON object"),
    ],
)
def test_an_invalid_schema_is_refused_saying_where(source, schema, message):
    with pytest.raises(ValidationError) as refused:
        plans.tracking_plan_create(
            name="Bad",
            events=[
                {"type": "track", "name": "Fine", "schema": {}},
                {"type": "track", "name": "Order Completed", "schema": schema},
            ],
        )

    errors = refused.value.message_dict
    assert list(errors) == ["events[1].schema"]
    assert message in errors["events[1].schema"][0]
    assert not TrackingPlan.objects.exists()


def test_names_must_fit_their_types_and_events_are_planned_once():
    with pytest.raises(ValidationError) as refused:
        plans.tracking_plan_create(
            name="Bad",
            events=[
                {"type": "identify", "name": "Signed Up", "schema": {}},
                {"type": "track", "name": "", "schema": {}},
                {"type": "page", "name": "Home", "schema": {}},
                {"type": "page", "name": "Home", "schema": {}},
            ],
        )

    assert refused.value.message_dict == {
        "events[0].name": ["identify calls have one schema for their traits: leave the name empty"],
        "events[1].name": ["a track event needs its name"],
        "events[3].name": ["the page event 'Home' is planned twice (also events[2])"],
    }


def test_a_source_follows_at_most_one_plan(source):
    plan_for(source)

    with pytest.raises(ValidationError) as refused:
        plans.tracking_plan_create(name="Other", sources=[{"source": source}])

    assert refused.value.message_dict == {
        "sources[0].source": [
            "the source 'Web shop' follows the tracking plan 'Shop plan': a source follows at "
            "most one plan, remove it there first"
        ]
    }


def test_a_schema_with_references_is_checked_whole(source):
    plans.tracking_plan_create(
        name="Refs",
        status="active",
        events=[
            {
                "type": "track",
                "name": "Order Completed",
                "schema": {
                    "$defs": {"money": {"type": "number", "minimum": 0}},
                    "properties": {"revenue": {"$ref": "#/$defs/money"}},
                },
            }
        ],
        sources=[{"source": source, "violation_action": "omit"}],
    )

    send(source, order("m-1", revenue=-5), order("m-2", revenue=5))

    assert "revenue" not in stored("m-1")
    assert stored("m-2")["revenue"] == 5
    assert violations() == {("Order Completed", "revenue", "wrong_type"): (1, 0)}


# --- the fast check agrees with jsonschema --------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5)
    | st.sampled_from(
        ["", "EUR", "USD", "o-1", "anna@example.com", "not an address", "2026-01-01T10:00:00Z"]
    )
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["sku", "price", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)
PROPERTIES = ["order_id", "revenue", "currency", "email", "products", "coupon", "age"]
DOCUMENTS = st.dictionaries(st.sampled_from(PROPERTIES), JSON_VALUES, max_size=6) | (
    st.fixed_dictionaries(
        {"order_id": st.sampled_from(["o-1", 1]), "revenue": JSON_SCALARS},
        optional={name: JSON_VALUES for name in PROPERTIES[2:]},
    )
)


CHECKS = {
    "closed": plans._Conformance(ORDER_SCHEMA),
    "open": plans._Conformance({**ORDER_SCHEMA, "additionalProperties": True}),
    "traits": plans._Conformance(TRAITS_SCHEMA),
    "empty": plans._Conformance({}),
}


@pytest.mark.parametrize("schema", sorted(CHECKS))
@hypothesis_settings(max_examples=500, deadline=None)
@given(documents=st.lists(DOCUMENTS, min_size=1, max_size=4))
def test_the_piecewise_check_answers_as_jsonschema_on_the_whole_document(schema, documents):
    # One check per schema for every example: what it remembers from one document must hold
    # for the next ones too.
    conformance = CHECKS[schema]
    assert conformance.shell is not None
    for document in documents:
        assert conformance.conforms(document) == conformance.validator.is_valid(document)


# --- pages, groups -------------------------------------------------------------------------------


def test_a_page_is_planned_by_name_with_the_category_among_its_properties(source):
    plans.tracking_plan_create(
        name="Pages",
        status="active",
        events=[
            {
                "type": "page",
                "name": "Product",
                "schema": {
                    "properties": {"category": {"enum": ["shoes", "bags"]}},
                    "additionalProperties": False,
                },
            }
        ],
        sources=[{"source": source, "violation_action": "omit"}],
    )
    page = {"type": "page", "userId": "u-1", "name": "Product"}

    send(
        source,
        {**page, "messageId": "m-1", "category": "shoes"},
        {**page, "messageId": "m-2", "category": "cars", "properties": {"path": "/p"}},
        {**page, "messageId": "m-3", "name": "Home"},
    )

    assert stored("m-1") == {"category": "shoes"}
    assert stored("m-2") == {}
    assert stored("m-3") == {}
    assert violations() == {
        ("Product", "category", "wrong_type"): (1, 0),
        ("Product", "path", "unplanned_property"): (1, 0),
        ("Home", "", "unplanned_event"): (1, 0),
    }


def test_group_traits_follow_the_plan_and_other_types_are_not_checked(source):
    plans.tracking_plan_create(
        name="Groups",
        status="active",
        events=[{"type": "group", "schema": {"required": ["plan"]}}],
        sources=[
            {"source": source, "violation_action": "block", "unplanned_event_action": "block"}
        ],
    )
    group = {"type": "group", "userId": "u-1", "groupId": "g-1"}

    send(
        source,
        {**group, "messageId": "m-1", "traits": {"plan": "pro"}},
        {**group, "messageId": "m-2", "traits": {"name": "Acme"}},
        {"type": "screen", "userId": "u-1", "messageId": "m-3", "name": "Home"},
        {"type": "alias", "userId": "u-1", "messageId": "m-4", "previousId": "a-1"},
    )

    # The plan names no screens: screens (and aliases) are not checked at all.
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-1", "m-3", "m-4"]
    assert list(RejectedMessage.objects.values_list("message_id", flat=True)) == ["m-2"]
    assert violations() == {("", "plan", "missing_required"): (1, 1)}


# --- personal data in examples --------------------------------------------------------------------


def holder():
    return next(h for h in registry.holders() if h.label == "profiles.TrackingPlanViolation")


def test_a_persons_examples_are_found_exported_and_erased_and_the_counts_stay(source):
    plans.tracking_plan_create(
        name="Shop plan",
        status="active",
        events=[{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        sources=[{"source": source}],
    )
    send(source, order("m-1", revenue="12"), {**order("m-2", revenue="13"), "userId": "u-2"})
    anna = Identity.objects.get(value="u-1").profile_id
    subject = Subject(profile_ids=frozenset({anna}))

    exported = holder().rows_for_access(subject)
    holder().erase(holder().find(subject), subject)

    assert [e["message_id"] for e in exported[0]["examples"]] == ["m-1"]
    violation = TrackingPlanViolation.objects.get()
    assert violation.count == 2
    assert [e["message_id"] for e in violation.examples] == ["m-2"]


def test_examples_of_blocked_messages_are_found_by_value(source):
    plans.tracking_plan_create(
        name="Shop plan",
        status="active",
        events=[{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        sources=[{"source": source, "violation_action": "block"}],
    )
    send(source, order("m-1", coupon="wilhelmina@example.net"))
    subject = Subject(emails=frozenset({"wilhelmina@example.net"}))

    holder().erase(holder().find(subject), subject)

    assert TrackingPlanViolation.objects.get().examples == []


def test_violations_are_purged_with_the_rejected_messages(source):
    plan = plans.tracking_plan_create(name="Shop plan")
    now = timezone.now()
    for days_ago in (40, 2):
        TrackingPlanViolation.objects.create(
            day=(now - timedelta(days=days_ago)).date(),
            plan=plan,
            source=source,
            event_type="track",
            event_name="Order Completed",
            kind="unplanned_event",
            count=1,
            first_seen_at=now,
            last_seen_at=now,
        )

    for purge in purgers("rejected_messages"):
        purge(now - timedelta(days=30), 100)

    assert [v.day for v in TrackingPlanViolation.objects.all()] == [
        (now - timedelta(days=2)).date()
    ]
