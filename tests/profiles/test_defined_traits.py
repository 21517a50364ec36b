"""Computed traits that marketers define: every kind, filters, windows that expire, the full
recompute agreeing with the incremental values, bad definitions refused, and their use in a
segment rule."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cdphub.deletion import DeleteProtected
from profiles.models import ComputedTrait, Event, Profile
from profiles.segments.computed import computed_traits_recompute_all, computed_traits_update
from profiles.segments.defined_traits import (
    computed_trait_delete,
    computed_trait_errors,
    computed_trait_save,
    computed_trait_users,
    defined_trait_preview,
    defined_trait_recompute,
    defined_trait_values_remove,
    defined_traits_recompute,
    defined_traits_update,
    defined_windows_expire,
)
from profiles.segments.rules import rule_errors, rule_queryset
from tests.factories import EventFactory, ProfileFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def event(profile, name="Order Completed", days_ago=1, type="track", **properties):
    now = timezone.now()
    return EventFactory(
        profile=profile,
        type=type,
        name=name,
        properties=properties,
        timestamp=now - timedelta(days=days_ago),
        received_at=now,
    )


def define(key, kind, **fields) -> ComputedTrait:
    fields.setdefault("event_name", "Order Completed")
    return ComputedTrait.objects.create(key=key, name=key.replace("_", " "), kind=kind, **fields)


def values(profile) -> dict:
    return Profile.objects.get(pk=profile.pk).computed_traits


@pytest.fixture
def shopper():
    """Four orders in two currencies, a page named like the order event, other events."""
    profile = ProfileFactory(traits={})
    event(profile, days_ago=40, total=20, currency="EUR", category="shoes", coupon=None)
    event(profile, days_ago=20, total="35.5", currency="USD", category="bags")
    event(profile, days_ago=5, total=10, currency="EUR", category="shoes")
    event(profile, days_ago=2, total="n/a", currency="EUR", category="hats")
    event(profile, type="page", days_ago=1, total=1000, currency="EUR")  # not an order
    event(profile, name="Product Viewed", days_ago=1, category="coats")
    return profile


KINDS = [
    ({"kind": "count"}, 4),
    ({"kind": "count", "window_days": 10}, 2),
    ({"kind": "count", "where": [{"property": "currency", "op": "eq", "value": "EUR"}]}, 3),
    ({"kind": "sum", "property": "total"}, Decimal("65.5")),
    ({"kind": "sum", "property": "total", "window_days": 30}, Decimal("45.5")),
    ({"kind": "average", "property": "total"}, 21.83),
    ({"kind": "min", "property": "total"}, 10),
    ({"kind": "max", "property": "total"}, Decimal("35.5")),
    ({"kind": "first", "property": "category"}, "shoes"),
    ({"kind": "last", "property": "category"}, "hats"),
    ({"kind": "last", "property": "total"}, "n/a"),
    ({"kind": "most_frequent", "property": "category"}, "shoes"),
    ({"kind": "most_frequent", "property": "currency", "window_days": 30}, "EUR"),
    ({"kind": "unique", "property": "category"}, ["bags", "hats", "shoes"]),
    ({"kind": "unique", "property": "category", "unique_limit": 2}, ["bags", "hats"]),
    ({"kind": "first", "property": "coupon"}, None),  # only a JSON null: no value
    ({"kind": "count", "event_type": "page", "event_name": ""}, 1),
    (
        {"kind": "unique", "property": "category", "event_name": ""},
        ["bags", "coats", "hats", "shoes"],
    ),
]


@pytest.mark.parametrize(("fields", "expected"), KINDS)
def test_every_kind_from_the_events_it_reads(shopper, fields, expected):
    trait = define("the_trait", **fields)
    defined_traits_update(profile_ids=[shopper.pk])
    result = values(shopper)
    if expected is None:
        assert "the_trait" not in result
    else:
        assert result["the_trait"] == expected, trait.get_kind_display()


def test_all_definitions_are_written_together_and_built_in_traits_kept(shopper):
    define("orders", "count")
    define("categories", "unique", property="category")
    computed_traits_update(profile_ids=[shopper.pk])
    result = values(shopper)
    assert result["orders"] == 4
    assert result["categories"] == ["bags", "hats", "shoes"]
    assert result["order_count"] == 4  # the built-in traits are there too


def test_a_profile_without_events_gets_zero_counts_and_no_other_values():
    profile = ProfileFactory(traits={})
    define("orders", "count")
    define("spent", "sum", property="total")
    define("last_category", "last", property="category")
    defined_traits_recompute()
    result = values(profile)
    assert result["orders"] == 0
    assert result["spent"] == 0
    assert "last_category" not in result


def test_a_value_that_no_longer_holds_is_removed(shopper):
    define("last_coupon", "last", property="coupon_code")
    event(shopper, days_ago=1, coupon_code="SPRING")
    defined_traits_update(profile_ids=[shopper.pk])
    assert values(shopper)["last_coupon"] == "SPRING"
    Event.objects.filter(profile=shopper, properties__has_key="coupon_code").delete()
    defined_traits_update(profile_ids=[shopper.pk])
    assert "last_coupon" not in values(shopper)


def test_a_window_count_goes_down_when_nothing_happens(shopper):
    trait = define("orders_7d", "count", window_days=7)
    defined_trait_recompute(trait)
    assert values(shopper)["orders_7d"] == 2  # 5 and 2 days ago
    # Four days later the order of 5 days ago has left the window; no new event came.
    later = timezone.now() + timedelta(days=4)
    changed = defined_windows_expire(now=later)
    assert changed == 1
    assert values(shopper)["orders_7d"] == 1
    # A week later the other one has gone too, and the next check finds nothing more to do.
    assert defined_windows_expire(now=later + timedelta(days=7)) == 1
    assert values(shopper)["orders_7d"] == 0
    assert defined_windows_expire(now=later + timedelta(days=8)) == 0


def test_windows_of_a_trait_not_yet_computed_wait_for_its_computation(shopper):
    define("orders_7d", "count", window_days=7)
    assert defined_windows_expire(now=timezone.now() + timedelta(days=30)) == 0
    assert "orders_7d" not in values(shopper)


def test_recompute_gives_the_incremental_values_on_generated_data():
    """Generated events of many kinds: the values kept up incrementally (events arriving in
    several rounds, each round refreshing the profiles it touched) equal a full recompute."""
    rng = random.Random(7)
    profiles = [ProfileFactory(traits={}) for _ in range(30)]
    definitions = [
        define("n_orders", "count"),
        define(
            "n_eur_30d", "count", window_days=30, where=[{"property": "currency", "value": "EUR"}]
        ),
        define("spent", "sum", property="total"),
        define("avg_basket", "average", property="total", window_days=60),
        define("cheapest", "min", property="total"),
        define("dearest", "max", property="total"),
        define("first_cat", "first", property="category"),
        define("last_cat", "last", property="category"),
        define("usual_cat", "most_frequent", property="category"),
        define("cats", "unique", property="category", unique_limit=3),
        define("pages", "count", event_type="page", event_name=""),
    ]
    for _round in range(3):
        touched = rng.sample(profiles, 12)
        for profile in touched:
            for _ in range(rng.randint(1, 6)):
                event(
                    profile,
                    name=rng.choice(["Order Completed", "Order Completed", "Product Viewed"]),
                    type=rng.choice(["track", "track", "track", "page"]),
                    days_ago=rng.randint(0, 90) + rng.random(),
                    total=rng.choice([5, 12.5, "40", 99, "free"]),
                    currency=rng.choice(["EUR", "USD"]),
                    category=rng.choice(["shoes", "bags", "hats", "coats", None]),
                )
        computed_traits_update(profile_ids=[p.pk for p in touched])
    incremental = {p.pk: values(p) for p in profiles}
    Profile.objects.update(computed_traits={})
    computed_traits_recompute_all(batch_size=7)
    recomputed = {p.pk: values(p) for p in profiles}
    keys = [d.key for d in definitions]
    touched_ids = [pk for pk, doc in incremental.items() if doc]
    assert len(touched_ids) > 15
    for pk in touched_ids:
        assert {k: incremental[pk].get(k) for k in keys} == {k: recomputed[pk].get(k) for k in keys}
    assert any(doc.get("cats") for doc in recomputed.values())


def test_a_merged_profile_keeps_no_values():
    survivor, merged = ProfileFactory(), ProfileFactory()
    Profile.objects.filter(pk=merged.pk).update(merged_into=survivor)
    define("orders", "count")
    defined_traits_recompute()
    assert "orders" not in values(merged)
    assert values(survivor)["orders"] == 0


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"key": "order_count"}, "key", "built-in"),
        ({"key": "Orders"}, "key", "lower-case"),
        ({"key": "9lives"}, "key", "starting with a letter"),
        ({"kind": "sum", "property": ""}, "property", "needs the property"),
        ({"kind": "count", "property": "total"}, "property", "has no property"),
        ({"kind": "max", "property": "a..b"}, "property", "empty segment"),
        ({"where": {"property": "x"}}, "where", "list of property filters"),
        ({"where": [{"property": "x", "op": "like", "value": 1}]}, "where", "where[0]"),
    ],
)
def test_bad_definitions_are_refused_with_the_field_and_reason(fields, field, message):
    trait = ComputedTrait(**{"key": "ok_key", "name": "ok", "kind": "count", **fields})
    errors = computed_trait_errors(trait)
    assert field in errors, errors
    assert message in " ".join(errors[field])
    with pytest.raises(ValidationError):
        computed_trait_save(trait=trait)
    assert not ComputedTrait.objects.exists()


def test_the_key_cannot_change_once_saved():
    trait = define("orders", "count")
    trait.key = "purchases"
    assert "cannot change" in computed_trait_errors(trait)["key"][0]


def test_saving_then_its_task_computes_for_everyone_and_deleting_then_its_task_removes(shopper):
    from profiles.tasks import recompute_defined_trait_task, remove_defined_trait_values_task

    computed_traits_update(profile_ids=[shopper.pk])
    trait = ComputedTrait(key="orders", name="Orders", kind="count", event_name="Order Completed")
    computed_trait_save(trait=trait)
    assert trait.status == ComputedTrait.Status.NEW
    recompute_defined_trait_task(trait.pk)
    trait.refresh_from_db()
    assert trait.status == ComputedTrait.Status.READY
    assert trait.computed_at is not None
    assert values(shopper)["orders"] == 4
    remove_defined_trait_values_task(computed_trait_delete(trait=trait))
    assert "orders" not in values(shopper)
    assert values(shopper)["order_count"] == 4  # the rest of the document stays


def test_values_of_a_key_defined_again_are_not_removed(shopper):
    define("orders", "count")
    defined_traits_recompute()
    assert defined_trait_values_remove("orders") == 0
    assert values(shopper)["orders"] == 4


def test_a_failed_computation_is_recorded_on_the_definition(shopper, monkeypatch):
    trait = define("orders", "count")

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr("profiles.segments.defined_traits.defined_traits_recompute", broken)
    trait = defined_trait_recompute(trait)
    assert trait.status == ComputedTrait.Status.FAILED
    assert "went away" in trait.last_error


def test_preview_on_a_sample_with_the_distribution(shopper):
    others = [ProfileFactory(traits={}) for _ in range(3)]
    for n, profile in enumerate(others):
        event(profile, total=10 * (n + 1), category="shoes")
    preview = defined_trait_preview(
        ComputedTrait(key="x", kind="sum", property="total", event_name="Order Completed"),
        pii=True,
    )
    assert preview["sampled"] == 4
    assert preview["with_value"] == 4
    assert preview["numbers"]["min"] == 10
    assert preview["numbers"]["max"] == Decimal("65.5")
    categories = defined_trait_preview(
        ComputedTrait(key="x", kind="unique", property="category", event_name="Order Completed"),
        pii=True,
    )
    assert categories["top"][0] == ("shoes", 4)
    nothing = defined_trait_preview(
        ComputedTrait(key="x", kind="count", event_name="Never Sent"), pii=True
    )
    assert nothing["sampled"] == 0


def test_a_segment_rule_uses_a_defined_trait(shopper):
    define("eur_orders", "count", where=[{"property": "currency", "value": "EUR"}])
    other = ProfileFactory(traits={})
    event(other, currency="USD")
    defined_traits_recompute()
    rule = {"computed": "eur_orders", "op": "gte", "value": 3}
    assert rule_errors(rule) == []
    assert list(rule_queryset(rule).values_list("pk", flat=True)) == [shopper.pk]
    unknown = rule_errors({"computed": "eur_order", "op": "gte", "value": 3})
    assert "unknown computed trait" in unknown[0] and "eur_orders" in unknown[0]


def test_a_trait_a_rule_reads_cannot_be_deleted():
    trait = define("orders", "count")
    SegmentFactory(
        name="Loyal", rule={"all": [{"not": {"computed": "orders", "op": "lt", "value": 3}}]}
    )
    SegmentFactory(name="Other", rule={"computed": "orders_total", "op": "gt", "value": 1})
    with pytest.raises(DeleteProtected) as refused:
        computed_trait_delete(trait=trait)
    assert refused.value.blockers == {"segments": 1}
    assert computed_trait_users(trait) == {"segments": ["Loyal"]}
    assert ComputedTrait.objects.filter(pk=trait.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_value_refreshed_while_everyone_is_computed_is_not_overwritten(monkeypatch):
    """The computation for everyone takes its values in one pass, then writes them batch by
    batch: a profile whose events were processed (and refreshed) in between keeps the newer
    value; the others get theirs."""
    from profiles.segments import defined_traits as service

    busy, quiet = ProfileFactory(traits={}), ProfileFactory(traits={})
    event(busy)
    event(quiet)
    trait = define("orders", "count")
    ranges = service.id_ranges

    def a_second_order_processed_meanwhile(batch_size):
        event(busy, days_ago=0)
        defined_traits_update(profile_ids=[busy.pk])
        yield from ranges(batch_size)

    monkeypatch.setattr(service, "id_ranges", a_second_order_processed_meanwhile)
    computed_again = []
    update = service.defined_traits_update
    monkeypatch.setattr(
        service,
        "defined_traits_update",
        lambda **kwargs: computed_again.extend(kwargs["profile_ids"]) or update(**kwargs),
    )
    defined_traits_recompute([trait])

    assert values(busy)["orders"] == 2  # not the snapshot's 1
    assert values(quiet)["orders"] == 1
    assert computed_again == [busy.pk]  # from its events as they are now


def test_the_preview_samples_recent_events_only():
    old, recent = ProfileFactory(traits={}), ProfileFactory(traits={})
    event(old, days_ago=200)
    event(recent, days_ago=3)
    preview = defined_trait_preview(
        ComputedTrait(key="x", kind="count", event_name="Order Completed"), pii=True
    )
    assert preview["sampled"] == 1
    assert preview["examples"] == [(recent.pk, 1)]
