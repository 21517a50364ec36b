"""Masks never come back as data: a caller who may not see personal data cannot change it,
and sending back what it was shown keeps the real value; from anyone, a masked value is
refused."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from crm.models import Contact
from profiles.models import Identity, Profile
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

TRAITS = {"email": "jan.jansen@example.com", "lastName": "Jansen", "plan": "free"}


@pytest.fixture
def masked(api_client_with_scopes):
    return api_client_with_scopes("profiles:read", "profiles:write", "crm:read", "crm:write")


@pytest.fixture
def unmasked(api_client_with_scopes):
    return api_client_with_scopes(
        "profiles:read", "profiles:write", "crm:read", "crm:write", "pii:read"
    )


def test_get_then_patch_without_pii_keeps_the_real_personal_traits(masked):
    profile = ProfileFactory(traits=TRAITS)
    shown = masked.get(f"/api/profiles/{profile.pk}/").json()["traits"]
    assert shown["email"] != TRAITS["email"]

    response = masked.patch(
        f"/api/profiles/{profile.pk}/", {"traits": {**shown, "plan": "pro"}}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert Profile.objects.get(pk=profile.pk).traits == {**TRAITS, "plan": "pro"}


def test_personal_traits_left_out_are_kept_not_deleted(masked):
    profile = ProfileFactory(traits=TRAITS)
    response = masked.patch(
        f"/api/profiles/{profile.pk}/", {"traits": {"plan": "pro"}}, format="json"
    )
    assert response.status_code == 200
    assert Profile.objects.get(pk=profile.pk).traits == {**TRAITS, "plan": "pro"}


@pytest.mark.parametrize(
    "traits", [{"email": "someone.else@example.com"}, {"phone_number": "+31612345678"}]
)
def test_setting_personal_traits_without_pii_is_refused(masked, traits):
    profile = ProfileFactory(traits=TRAITS)
    response = masked.patch(f"/api/profiles/{profile.pk}/", {"traits": traits}, format="json")
    assert response.status_code == 400
    key = next(iter(traits))
    assert response.json()["errors"][f"traits.{key}"] == [
        "changing personal data needs personal data access (pii:read)"
    ]
    assert Profile.objects.get(pk=profile.pk).traits == TRAITS


def test_a_masked_value_is_refused_even_with_pii(unmasked):
    profile = ProfileFactory(traits=TRAITS)
    response = unmasked.patch(
        f"/api/profiles/{profile.pk}/", {"traits": {"email": "j•••@•••"}}, format="json"
    )
    assert response.status_code == 400
    assert "masked value" in response.json()["errors"]["traits.email"][0]
    assert Profile.objects.get(pk=profile.pk).traits == TRAITS


def contact() -> Contact:
    return Contact.objects.create(
        first_name="Jan", last_name="Jansen", email="jan@example.com", street="Dorpsstraat 1"
    )


def test_contact_put_back_as_shown_without_pii_changes_nothing_personal(masked):
    person = contact()
    shown = masked.get(f"/api/crm/contacts/{person.pk}/").json()
    assert shown["first_name"] != "Jan"
    body = {key: value for key, value in shown.items() if value is not None}
    response = masked.put(
        f"/api/crm/contacts/{person.pk}/", {**body, "job_title": "Buyer"}, format="json"
    )
    assert response.status_code == 200, response.json()
    person.refresh_from_db()
    assert (person.first_name, person.email, person.street) == (
        "Jan",
        "jan@example.com",
        "Dorpsstraat 1",
    )
    assert person.job_title == "Buyer"


def test_contact_personal_field_change_without_pii_is_refused(masked, unmasked):
    person = contact()
    response = masked.patch(f"/api/crm/contacts/{person.pk}/", {"last_name": "Smit"}, format="json")
    assert response.status_code == 400
    assert "personal data access" in response.json()["errors"]["last_name"][0]
    response = unmasked.patch(
        f"/api/crm/contacts/{person.pk}/", {"first_name": "J•••"}, format="json"
    )
    assert response.status_code == 400
    assert "masked value" in response.json()["errors"]["first_name"][0]
    person.refresh_from_db()
    assert (person.first_name, person.last_name) == ("Jan", "Jansen")


def test_a_new_contact_may_be_created_without_pii(masked):
    response = masked.post(
        "/api/crm/contacts/", {"first_name": "Piet", "email": "piet@example.com"}, format="json"
    )
    assert response.status_code == 201
    assert Contact.objects.get().email == "piet@example.com"


def test_data_engineer_cannot_set_a_personal_identity_in_the_admin(user_with_role):
    profile = ProfileFactory(traits={})
    browser = Client()
    browser.force_login(user_with_role("Data engineer"))
    response = browser.post(
        reverse("admin:profiles_identity_add"),
        {
            "profile": profile.pk,
            "kind": "email",
            "value": "someone@example.com",
            "first_seen_at_0": "2026-01-01",
            "first_seen_at_1": "00:00:00",
            "last_seen_at_0": "2026-01-01",
            "last_seen_at_1": "00:00:00",
        },
    )
    assert response.status_code in (200, 403)
    assert not Identity.objects.filter(value="someone@example.com").exists()
