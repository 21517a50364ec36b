"""Computed traits defined in the admin: the form refuses bad definitions with the field and
reason, saving computes the trait for everyone, the preview computes without saving (masked for
roles without personal data), the profile page shows the values by their names."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from profiles.models import ComputedTrait, Profile
from tests.factories import EventFactory, ProfileFactory

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/profiles/computedtrait/preview/"
FORM = {
    "name": "Orders in euros",
    "key": "eur_orders",
    "description": "",
    "kind": "count",
    "event_type": "track",
    "event_name": "Order Completed",
    "property": "",
    "where": json.dumps([{"property": "currency", "op": "eq", "value": "EUR"}]),
    "window_days": "",
    "unique_limit": 20,
}


@pytest.fixture
def buyers():
    profiles = []
    for n in range(3):
        profile = ProfileFactory(traits={"email": f"buyer{n}@example.com"})
        for currency in ["EUR"] * (n + 1) + ["USD"]:
            EventFactory(
                profile=profile,
                name="Order Completed",
                properties={"currency": currency, "shipping_email": f"ship{n}@example.com"},
            )
        profiles.append(profile)
    return profiles


def test_add_form_saves_and_computes_for_every_profile(
    admin_client, buyers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:profiles_computedtrait_add"), FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    trait = ComputedTrait.objects.get()
    assert trait.status == ComputedTrait.Status.READY
    counts = sorted(p.computed_traits["eur_orders"] for p in Profile.objects.all())
    assert counts == [1, 2, 3]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key": "order_count"}, "built-in"),
        ({"kind": "sum"}, "needs the property"),
        ({"where": json.dumps([{"property": "currency", "op": "like"}])}, "where[0]"),
        ({"where": "not json"}, "Enter a valid JSON"),
        ({"window_days": 0}, "greater than or equal to 1"),
    ],
)
def test_add_form_refuses_a_bad_definition_with_the_reason(admin_client, changes, message):
    response = admin_client.post(reverse("admin:profiles_computedtrait_add"), {**FORM, **changes})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ComputedTrait.objects.exists()


def test_the_key_is_read_only_once_saved(admin_client):
    trait = ComputedTrait.objects.create(key="orders", name="Orders", kind="count")
    response = admin_client.post(
        reverse("admin:profiles_computedtrait_change", args=[trait.pk]),
        {**FORM, "key": "renamed"},
    )
    assert response.status_code == 302
    trait.refresh_from_db()
    assert trait.key == "orders"
    assert trait.name == "Orders in euros"


def test_preview_computes_without_saving(admin_client, buyers):
    response = admin_client.post(PREVIEW, FORM)
    assert response.status_code == 200
    body = response.json()
    assert body["sampled"] == 3 and body["with_value"] == 3
    assert body["numbers"]["min"] == "1" and body["numbers"]["max"] == "3"
    assert {example["value"] for example in body["examples"]} == {1, 2, 3}
    assert not ComputedTrait.objects.exists()


def test_preview_reports_errors_per_field(admin_client):
    response = admin_client.post(PREVIEW, {**FORM, "kind": "max"})
    assert response.status_code == 400
    assert "needs the property" in response.json()["errors"]["property"][0]["message"]


def test_preview_masks_personal_values_for_roles_without_personal_data(
    client, user_with_role, buyers
):
    form = {**FORM, "kind": "last", "property": "shipping_email", "key": "last_ship"}
    client.force_login(user_with_role("Data engineer"))
    body = client.post(PREVIEW, form).json()
    assert body["with_value"] == 3
    assert not any("example.com" in json.dumps(example["value"]) for example in body["examples"])
    client.force_login(user_with_role("Marketer", "marketer"))
    body = client.post(PREVIEW, form).json()
    assert any("@example.com" in example["value"] for example in body["examples"])


def test_preview_needs_the_permission_to_edit(client, user_with_role):
    client.force_login(user_with_role("Analyst"))
    assert client.post(PREVIEW, FORM).status_code == 403


def test_profile_page_shows_defined_traits_by_name_masked_when_personal(
    client, user_with_role, buyers
):
    from profiles.segments.defined_traits import defined_traits_recompute

    ComputedTrait.objects.create(
        key="currencies",
        name="Currencies used",
        kind="unique",
        event_name="Order Completed",
        property="currency",
    )
    ComputedTrait.objects.create(
        key="last_ship",
        name="Last shipping e-mail",
        kind="last",
        event_name="Order Completed",
        property="shipping_email",
    )
    defined_traits_recompute()
    url = reverse("admin:profiles_profile_change", args=[buyers[0].pk])
    client.force_login(user_with_role("Marketer"))
    page = client.get(url).content.decode()
    assert "Currencies used" in page and "EUR, USD" in page
    assert "ship0@example.com" in page
    client.force_login(user_with_role("Data engineer", "engineer"))
    page = client.get(url).content.decode()
    assert "Currencies used" in page and "EUR, USD" in page
    assert "ship0@example.com" not in page


def test_deleting_in_the_admin_removes_the_values(
    admin_client, buyers, django_capture_on_commit_callbacks
):
    from profiles.segments.defined_traits import defined_traits_recompute

    trait = ComputedTrait.objects.create(key="orders", name="Orders", kind="count")
    defined_traits_recompute()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:profiles_computedtrait_delete", args=[trait.pk]), {"post": "yes"}
        )
    assert response.status_code == 302
    assert not any("orders" in p.computed_traits for p in Profile.objects.all())


def test_the_delete_page_names_the_segments_that_read_the_trait(admin_client):
    from tests.factories import SegmentFactory

    trait = ComputedTrait.objects.create(key="orders", name="Orders", kind="count")
    SegmentFactory(name="Repeat buyers", rule={"computed": "orders", "op": "gte", "value": 2})
    url = reverse("admin:profiles_computedtrait_delete", args=[trait.pk])
    page = admin_client.get(url).content.decode()
    assert "Segment: Repeat buyers" in page
    admin_client.post(url, {"post": "yes"})
    assert ComputedTrait.objects.filter(pk=trait.pk).exists()
