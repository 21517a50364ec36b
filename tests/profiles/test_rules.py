from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from crm.models import Contact, Deal, Pipeline, Stage
from profiles.models import Event, Segment, SegmentMembership
from profiles.segments.rules import RuleError, rule_queryset, rule_validate
from tests.factories import (
    EventFactory,
    ProfileFactory,
    PurposeFactory,
    SegmentFactory,
    consent_state_create,
)

pytestmark = pytest.mark.django_db


def errors_of(rule, **kwargs) -> dict[str, str]:
    with pytest.raises(RuleError) as caught:
        rule_validate(rule, **kwargs)
    return {error["path"]: error["message"] for error in caught.value.problems}


def ids(rule) -> set[int]:
    return set(rule_queryset(rule).values_list("pk", flat=True))


# --- validation ---------------------------------------------------------------------------------


def test_bad_operator_is_named_with_its_path():
    errors = errors_of(
        {
            "all": [
                {"trait": "country", "op": "eq", "value": "NL"},
                {"trait": "age", "op": "bigger", "value": 3},
            ]
        }
    )
    assert list(errors) == ["all[1].trait.op"]
    assert "unknown operator 'bigger'" in errors["all[1].trait.op"]


def test_bad_event_count_operator_path_matches_the_documented_form():
    rule = {
        "all": [
            {"trait": "a"},
            {"trait": "b"},
            {"event": "Order Completed", "count": {"op": "most", "value": 1}},
        ]
    }
    errors = errors_of(rule)
    assert "all[2].event.count.op" in errors


def test_unknown_leaf_lists_what_is_allowed():
    errors = errors_of({"any": [{"sql": "DROP TABLE profiles_profile"}]})
    assert "unknown condition (keys: sql)" in errors["any[0]"]
    assert "trait" in errors["any[0]"]


def test_bad_paths_and_value_types_are_all_reported():
    rule = {
        "all": [
            {"trait": "address..city", "op": "eq", "value": "Utrecht"},
            {"trait": "age", "op": "gt", "value": [1, 2]},
            {"trait": "tier", "op": "in", "value": "gold"},
            {"trait": "city", "op": "contains", "value": 5},
            {"computed": "shoe_size", "op": "gt", "value": 40},
            {"event": "Viewed", "within_days": 0},
            {"event": "Viewed", "between": ["2024-05-01", "yesterday"]},
            {"event": "Viewed", "count": {"op": "gte", "value": -1}},
            {"not": [{"trait": "a"}]},
            {"crm": "lifecycle_stage", "op": "eq", "value": "prospect"},
            {"crm": "favourite_colour", "op": "eq", "value": "red"},
        ]
    }
    errors = errors_of(rule)
    assert "empty segment" in errors["all[0].trait"]
    assert "not a list" in errors["all[1].trait.value"]
    assert "non-empty list" in errors["all[2].trait.value"]
    assert "non-empty string" in errors["all[3].trait.value"]
    assert "unknown computed trait 'shoe_size'" in errors["all[4].computed"]
    assert "whole days" in errors["all[5].event.within_days"]
    assert "ISO 8601" in errors["all[6].event.between[1]"]
    assert "whole number >= 0" in errors["all[7].event.count.value"]
    assert "expected a condition object" in errors["all[8].not"]
    assert "unknown lifecycle stage 'prospect'" in errors["all[9].crm.value"]
    assert "unknown CRM field" in errors["all[10].crm"]


def test_empty_rule_and_empty_group_are_refused():
    assert "non-empty JSON object" in errors_of({})[""]
    assert "non-empty list" in errors_of({"all": []})["all"]


def test_unknown_keys_inside_a_leaf_are_refused():
    errors = errors_of({"event": "Viewed", "within": 7})
    assert "unknown key" in errors["event.within"]


def test_unknown_purpose_and_segment_are_refused():
    errors = errors_of({"all": [{"consent": "telepathy"}, {"segment": 987654}]})
    assert "unknown purpose 'telepathy'" in errors["all[0].consent"]
    assert "does not exist" in errors["all[1].segment"]


def test_segment_cycle_is_refused():
    first = SegmentFactory(rule={"trait": "country", "op": "eq", "value": "NL"})
    second = SegmentFactory(rule={"all": [{"segment": first.pk}]})
    errors = errors_of({"any": [{"segment": second.pk}]}, segment_id=first.pk)
    assert f"cycle: {first.pk} -> {second.pk} -> {first.pk}" in errors["any[0].segment"]


def test_self_reference_is_a_cycle():
    segment = SegmentFactory()
    errors = errors_of({"segment": segment.pk}, segment_id=segment.pk)
    assert "refers back to itself" in errors["segment"]


def test_a_valid_rule_passes():
    PurposeFactory(code="email_marketing")
    rule_validate(
        {
            "all": [
                {"trait": "country", "op": "eq", "value": "NL"},
                {
                    "event": "Page Viewed",
                    "where": [{"property": "url", "op": "contains", "value": "/jackets"}],
                    "count": {"op": "gte", "value": 1},
                    "within_days": 7,
                },
                {"not": {"event": "Order Completed", "within_days": 7}},
                {"computed": "lifetime_value", "op": "gt", "value": 100},
                {"consent": "email_marketing"},
                {"any": [{"crm": "lifecycle_stage", "op": "in", "value": ["lead", "customer"]}]},
            ]
        }
    )


# --- evaluation: traits -------------------------------------------------------------------------


def test_trait_numbers_compare_as_numbers_even_when_sent_as_strings():
    nine = ProfileFactory(traits={"age": 9})
    forty = ProfileFactory(traits={"age": "40"})
    ProfileFactory(traits={"age": "unknown"})
    ProfileFactory(traits={})
    assert ids({"trait": "age", "op": "gt", "value": 10}) == {forty.pk}
    assert ids({"trait": "age", "op": "lte", "value": 9}) == {nine.pk}
    assert ids({"trait": "age", "op": "eq", "value": 40}) == {forty.pk}


def test_trait_dates_compare_as_dates():
    early = ProfileFactory(traits={"signed_up": "2024-04-30T23:59:00+00:00"})
    on_day = ProfileFactory(traits={"signed_up": "2024-05-01"})
    late = ProfileFactory(traits={"signed_up": "2024-05-02T08:00:00Z"})
    ProfileFactory(traits={"signed_up": "not a date"})
    assert ids({"trait": "signed_up", "op": "lt", "value": "2024-05-01"}) == {early.pk}
    assert ids({"trait": "signed_up", "op": "gte", "value": "2024-05-01"}) == {on_day.pk, late.pk}
    assert ids({"trait": "signed_up", "op": "gt", "value": "2024-05-01"}) == {late.pk}


def test_nested_trait_paths_and_text_operators():
    utrecht = ProfileFactory(traits={"address": {"city": "Utrecht"}, "tags": ["vip", "b2b"]})
    amsterdam = ProfileFactory(traits={"address": {"city": "Amsterdam"}, "tags": ["new"]})
    nameless = ProfileFactory(traits={})
    assert ids({"trait": "address.city", "op": "eq", "value": "Utrecht"}) == {utrecht.pk}
    assert ids({"trait": "address.city", "op": "starts_with", "value": "ams"}) == {amsterdam.pk}
    assert ids({"trait": "address.city", "op": "contains", "value": "RECH"}) == {utrecht.pk}
    assert ids({"trait": "tags", "op": "contains", "value": "vip"}) == {utrecht.pk}
    assert ids({"trait": "address.city", "op": "in", "value": ["Utrecht", "Delft"]}) == {utrecht.pk}
    assert ids({"trait": "address.city", "op": "not_in", "value": ["Utrecht"]}) == {amsterdam.pk}
    assert ids({"trait": "address.city", "op": "neq", "value": "Utrecht"}) == {amsterdam.pk}
    assert ids({"trait": "address", "op": "exists"}) == {utrecht.pk, amsterdam.pk}
    assert ids({"trait": "address", "op": "exists", "value": False}) == {nameless.pk}


def test_trait_conditions_that_select_by_value_use_the_traits_index():
    """eq and in are containment (``traits @> ...``), which the traits index
    (``jsonb_path_ops``) serves; with plain scans made prohibitive the plan shows it."""
    from django.db import connection, transaction

    ProfileFactory(traits={"address": {"city": "Utrecht"}, "tags": ["vip"]})
    leaves = [
        {"trait": "address.city", "op": "eq", "value": "Utrecht"},
        {"trait": "address.city", "op": "in", "value": ["Utrecht", "Delft"]},
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plans = [rule_queryset(leaf).explain() for leaf in leaves]
    assert all("profile_traits_paths" in plan for plan in plans), plans


def test_not_of_a_comparison_includes_profiles_without_the_trait():
    young = ProfileFactory(traits={"age": 20})
    old = ProfileFactory(traits={"age": 70})
    unknown = ProfileFactory(traits={})
    assert ids({"not": {"trait": "age", "op": "gt", "value": 65}}) == {young.pk, unknown.pk}
    assert old.pk in ids({"trait": "age", "op": "gt", "value": 65})


def test_merged_profiles_are_never_selected():
    survivor = ProfileFactory(traits={"country": "NL"})
    ProfileFactory(traits={"country": "NL"}, merged_into=survivor)
    assert ids({"trait": "country", "op": "eq", "value": "NL"}) == {survivor.pk}


def test_computed_leaf_reads_computed_traits():
    rich = ProfileFactory(computed_traits={"lifetime_value": 250.5, "churn_risk": "low"})
    ProfileFactory(computed_traits={"lifetime_value": 20})
    assert ids({"computed": "lifetime_value", "op": "gt", "value": 100}) == {rich.pk}
    assert ids({"computed": "churn_risk", "op": "eq", "value": "low"}) == {rich.pk}


# --- evaluation: events and pages ---------------------------------------------------------------


def event(profile, name, days_ago=0, **kwargs):
    now = timezone.now()
    return EventFactory(
        profile=profile,
        name=name,
        timestamp=now - timedelta(days=days_ago),
        received_at=now,
        **kwargs,
    )


def test_event_counts_in_a_window():
    twice = ProfileFactory()
    event(twice, "Page Viewed", 1)
    event(twice, "Page Viewed", 2)
    once = ProfileFactory()
    event(once, "Page Viewed", 1)
    event(once, "Page Viewed", 30)  # outside the window
    never = ProfileFactory()
    rule = {"event": "Page Viewed", "within_days": 7}
    assert ids(rule) == {twice.pk, once.pk}
    assert ids({**rule, "count": {"op": "gte", "value": 2}}) == {twice.pk}
    assert ids({**rule, "count": {"op": "eq", "value": 1}}) == {once.pk}
    assert ids({**rule, "count": {"op": "lt", "value": 1}}) == {never.pk}
    assert ids({**rule, "count": {"op": "in", "value": [0, 2]}}) == {never.pk, twice.pk}
    assert ids({"event": "Page Viewed", "count": {"op": "gt", "value": 1}}) == {twice.pk, once.pk}


def test_event_property_filters_and_between_dates():
    now = timezone.now()
    jacket = ProfileFactory()
    event(jacket, "Product Viewed", 3, properties={"sku": "JKT-1", "price": "79.95"})
    shoe = ProfileFactory()
    event(shoe, "Product Viewed", 3, properties={"sku": "SHO-9", "price": 20})
    where = [{"property": "sku", "op": "starts_with", "value": "JKT"}]
    assert ids({"event": "Product Viewed", "where": where}) == {jacket.pk}
    pricey = [{"property": "price", "op": "gte", "value": 50}]
    assert ids({"event": "Product Viewed", "where": pricey}) == {jacket.pk}
    day = (now - timedelta(days=3)).date().isoformat()
    assert ids({"event": "Product Viewed", "between": [day, day]}) == {jacket.pk, shoe.pk}
    before = (now - timedelta(days=10)).date().isoformat()
    assert ids({"event": "Product Viewed", "between": [before, before]}) == set()


def test_first_and_last_occurrence():
    new_buyer = ProfileFactory()
    event(new_buyer, "Order Completed", 2)
    old_buyer = ProfileFactory()
    event(old_buyer, "Order Completed", 60)
    event(old_buyer, "Order Completed", 1)
    lapsed = ProfileFactory()
    event(lapsed, "Order Completed", 60)
    first = {"event": "Order Completed", "occurrence": "first", "within_days": 7}
    assert ids(first) == {new_buyer.pk}
    day = (timezone.now() - timedelta(days=60)).date().isoformat()
    last = {"event": "Order Completed", "occurrence": "last", "between": [day, day]}
    assert ids(last) == {lapsed.pk}


def test_negated_event_selects_profiles_without_it():
    buyer = ProfileFactory()
    event(buyer, "Order Completed", 1)
    browser = ProfileFactory()
    event(browser, "Page Viewed", 1)
    assert ids({"not": {"event": "Order Completed", "within_days": 7}}) == {browser.pk}


def test_page_leaf_matches_page_events_by_url():
    visitor = ProfileFactory()
    event(
        visitor,
        "Jackets",
        1,
        type=Event.Type.PAGE,
        properties={"url": "https://shop.example/jackets/rain"},
    )
    tracked = ProfileFactory()
    event(tracked, "Clicked", 1, properties={"url": "https://shop.example/jackets"})
    assert ids({"page": "/jackets", "within_days": 7}) == {visitor.pk}
    assert ids({"page": "https://shop.example/jackets/rain", "op": "eq"}) == {visitor.pk}


# --- consent, CRM, segment, groups --------------------------------------------------------------


def test_consent_leaf_needs_granted_now():
    purpose = PurposeFactory(code="email_marketing")
    granted = ProfileFactory()
    consent_state_create(granted, purpose, "granted")
    withdrawn = ProfileFactory()
    consent_state_create(withdrawn, purpose, "withdrawn")
    ProfileFactory()
    assert ids({"consent": "email_marketing"}) == {granted.pk}


def test_crm_fields_and_open_deal_in_stage():
    lead = ProfileFactory()
    Contact.objects.create(profile=lead, lifecycle_stage="lead", job_title="Buyer")
    customer = ProfileFactory()
    contact = Contact.objects.create(profile=customer, lifecycle_stage="customer")
    pipeline = Pipeline.objects.create(name="Sales")
    stage = Stage.objects.create(pipeline=pipeline, name="Negotiation", order=2)
    Deal.objects.create(name="Deal", pipeline=pipeline, stage=stage, contact=contact)
    won = ProfileFactory()
    won_contact = Contact.objects.create(profile=won, lifecycle_stage="customer")
    Deal.objects.create(
        name="Won deal", pipeline=pipeline, stage=stage, contact=won_contact, status=Deal.Status.WON
    )
    assert ids({"crm": "lifecycle_stage", "op": "in", "value": ["lead", "mql"]}) == {lead.pk}
    assert ids({"crm": "job_title", "op": "contains", "value": "buy"}) == {lead.pk}
    assert ids({"crm": "deal_stage", "op": "eq", "value": "Negotiation"}) == {customer.pk}
    assert ids({"crm": "deal_stage", "op": "exists"}) == {customer.pk}
    assert ids({"crm": "deal_stage"}) == {customer.pk}  # no operator: "exists"
    assert ids({"crm": "lifecycle_stage", "op": "neq", "value": "lead"}) == {customer.pk, won.pk}


def test_segment_leaf_inlines_dynamic_and_reads_static_members():
    dutch = ProfileFactory(traits={"country": "NL"})
    belgian = ProfileFactory(traits={"country": "BE"})
    dynamic = SegmentFactory(rule={"trait": "country", "op": "eq", "value": "NL"})
    static = SegmentFactory(kind=Segment.Kind.STATIC, rule={})
    SegmentMembership.objects.create(segment=static, profile=belgian, entered_at=timezone.now())
    # Dynamic: evaluated live, even though it was never refreshed.
    assert ids({"segment": dynamic.pk}) == {dutch.pk}
    assert ids({"segment": static.pk}) == {belgian.pk}
    assert ids({"any": [{"segment": dynamic.pk}, {"segment": static.pk}]}) == {dutch.pk, belgian.pk}


def test_groups_all_any_not_combine():
    a = ProfileFactory(traits={"country": "NL", "age": 30})
    b = ProfileFactory(traits={"country": "NL", "age": 70})
    c = ProfileFactory(traits={"country": "BE", "age": 30})
    rule = {
        "all": [
            {"trait": "country", "op": "eq", "value": "NL"},
            {"not": {"trait": "age", "op": "gt", "value": 65}},
        ]
    }
    assert ids(rule) == {a.pk}
    rule = {
        "any": [
            {"trait": "country", "op": "eq", "value": "BE"},
            {"trait": "age", "op": "gte", "value": 70},
        ]
    }
    assert ids(rule) == {b.pk, c.pk}


def test_whole_rule_is_one_query(django_assert_num_queries):
    PurposeFactory(code="email_marketing")
    segment = SegmentFactory()
    rule = {
        "all": [
            {"trait": "country", "op": "eq", "value": "NL"},
            {"event": "Page Viewed", "within_days": 7},
            {"consent": "email_marketing"},
            {"crm": "lifecycle_stage", "op": "eq", "value": "lead"},
            {"segment": segment.pk},
        ]
    }
    queryset = rule_queryset(rule)
    with django_assert_num_queries(1):
        list(queryset)
