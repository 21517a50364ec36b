from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from profiles.models import Profile
from profiles.segments.computed import computed_traits_recompute_all, computed_traits_update
from tests.factories import EventFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def order(profile, days_ago, **properties):
    now = timezone.now()
    return EventFactory(
        profile=profile,
        name="Order Completed",
        properties=properties,
        timestamp=now - timedelta(days=days_ago),
        received_at=now,
    )


def view(profile, days_ago):
    now = timezone.now()
    return EventFactory(
        profile=profile,
        name="Page Viewed",
        timestamp=now - timedelta(days=days_ago),
        received_at=now,
    )


@pytest.fixture
def shoppers():
    """Ten customers with growing spend and order counts, and one browser."""
    customers = []
    for n in range(1, 11):
        profile = ProfileFactory(traits={})
        for k in range(n):
            order(profile, days_ago=n * 10 + k, revenue=10 * n)
        customers.append(profile)
    browser = ProfileFactory(traits={})
    view(browser, 1)
    view(browser, 20)
    view(browser, 60)
    return customers, browser


def traits(profile) -> dict:
    return Profile.objects.get(pk=profile.pk).computed_traits


def test_order_aggregates_and_revenue_fallback_property():
    profile = ProfileFactory()
    order(profile, 40, revenue=100)
    order(profile, 10, total="50.5")  # no revenue: falls back to total, a numeric string
    view(profile, 3)
    computed_traits_update(profile_ids=[profile.pk])
    result = traits(profile)
    assert result["lifetime_value"] == 150.5
    assert result["order_count"] == 2
    assert result["average_order_value"] == 75.25
    assert result["first_order_at"] < result["last_order_at"]
    assert result["last_seen_at"] > result["last_order_at"]
    assert result["event_counts"]["Page Viewed"] == {"7d": 1, "30d": 1, "90d": 1}
    assert result["event_counts"]["Order Completed"] == {"7d": 0, "30d": 1, "90d": 2}
    assert result["churn_risk"] == "low"


def test_order_event_name_is_configurable(settings):
    settings.CDPHUB_ORDER_EVENT = "Checkout Done"
    settings.CDPHUB_REVENUE_PROPERTIES = ["amount"]
    profile = ProfileFactory()
    EventFactory(profile=profile, name="Checkout Done", properties={"amount": 12})
    order(profile, 1, revenue=1000)
    computed_traits_update(profile_ids=[profile.pk])
    assert traits(profile)["lifetime_value"] == 12
    assert traits(profile)["order_count"] == 1


def test_profile_without_orders_has_no_rfm_or_churn(shoppers):
    _, browser = shoppers
    computed_traits_recompute_all()
    result = traits(browser)
    assert result["order_count"] == 0
    assert result["lifetime_value"] == 0
    assert "rfm_score" not in result
    assert "churn_risk" not in result
    assert result["event_counts"]["Page Viewed"] == {"7d": 1, "30d": 2, "90d": 3}


def test_rfm_quintiles_rank_customers(shoppers):
    customers, _ = shoppers
    computed_traits_recompute_all()
    lowest, highest = traits(customers[0]), traits(customers[-1])
    # The biggest spender orders most; the smallest ordered most recently.
    assert (highest["rfm_frequency"], highest["rfm_monetary"]) == (5, 5)
    assert (lowest["rfm_frequency"], lowest["rfm_monetary"]) == (1, 1)
    assert lowest["rfm_recency"] == 5
    assert highest["rfm_recency"] == 1
    assert lowest["rfm_score"] == "511"
    scores = sorted(traits(p)["rfm_monetary"] for p in customers)
    assert scores == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_incremental_and_full_recompute_agree(shoppers):
    customers, browser = shoppers
    everyone = [*customers, browser]
    now = timezone.now()
    computed_traits_recompute_all(now=now, batch_size=3)
    full = {p.pk: traits(p) for p in everyone}
    Profile.objects.update(computed_traits={})
    computed_traits_update(profile_ids=[p.pk for p in everyone], now=now)
    incremental = {p.pk: traits(p) for p in everyone}
    assert incremental == full
    assert all(full[p.pk].get("rfm_score") for p in customers)


def test_incremental_update_after_a_new_order_matches_a_full_run(shoppers):
    customers, _ = shoppers
    now = timezone.now()
    computed_traits_recompute_all(now=now)
    order(customers[0], 0, revenue=5)
    computed_traits_update(profile_ids=[customers[0].pk], now=now)
    incremental = traits(customers[0])
    assert incremental["order_count"] == 2
    computed_traits_recompute_all(now=now)
    assert traits(customers[0])["lifetime_value"] == incremental["lifetime_value"]
    assert traits(customers[0])["order_count"] == incremental["order_count"]


def test_recompute_keeps_given_keys_and_drops_stale_computed_ones():
    profile = ProfileFactory(computed_traits={"rfm_score": "555", "model_score": 0.7})
    computed_traits_update(profile_ids=[profile.pk])
    result = traits(profile)
    assert "rfm_score" not in result  # no orders any more
    assert result["model_score"] == 0.7  # not ours: kept


def test_merged_profiles_are_skipped():
    survivor = ProfileFactory()
    merged = ProfileFactory(merged_into=survivor, computed_traits={})
    order(merged, 1, revenue=10)
    computed_traits_update(profile_ids=[merged.pk, survivor.pk])
    assert traits(merged) == {}
    assert traits(survivor)["order_count"] == 0


def test_recompute_traits_command(shoppers, capsys):
    customers, _ = shoppers
    call_command("recompute_traits")
    assert "changed for 11 profiles" in capsys.readouterr().out
    assert traits(customers[3])["order_count"] == 4
    call_command("recompute_traits", profile=[customers[3].pk])
    assert "changed for 0 profiles" in capsys.readouterr().out


def test_only_track_events_count_as_orders_and_in_the_event_counts():
    """A page or screen that happens to be named like the order event is no order, and a
    group call (whose name is the account's id) is no event a person did."""
    profile = ProfileFactory()
    order(profile, 5, revenue=40)
    now = timezone.now()
    for kind, name in (
        ("page", "Order Completed"),
        ("screen", "Order Completed"),
        ("group", "acme"),
    ):
        EventFactory(
            profile=profile,
            type=kind,
            name=name,
            properties={"revenue": 1000},
            timestamp=now - timedelta(days=1),
            received_at=now,
        )
    computed_traits_update(profile_ids=[profile.pk])
    result = traits(profile)
    assert (result["order_count"], result["lifetime_value"]) == (1, 40)
    assert result["event_counts"] == {"Order Completed": {"7d": 1, "30d": 1, "90d": 1}}
    assert result["last_order_at"] < result["last_seen_at"]  # the page was still seen
