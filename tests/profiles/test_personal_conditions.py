"""No oracle on personal data for those who may not see it: a segment rule conditioning on an
e-mail answers, one count at a time, what the e-mail is; so does a search that finds a profile
by its e-mail. Refused in preview, save, members and sizes, admin and API alike; ``exists`` and
conditions on non-personal data stay allowed."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from crm.models import Contact
from profiles.models import Identity, Segment
from profiles.segments.rules import personal_conditions
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

EMAIL = "anna.dubois1993@example.com"
ORACLE = {"all": [{"trait": "email", "op": "starts_with", "value": "anna.dubois1993@"}]}


@pytest.fixture
def anna():
    profile = ProfileFactory(traits={"email": EMAIL, "plan": "pro"})
    IdentityFactory(profile=profile, kind="email", value=EMAIL)
    IdentityFactory(profile=profile, kind="user_id", value="u-anna")
    return profile


@pytest.mark.parametrize(
    "rule, paths",
    [
        (ORACLE, ["all[0].trait"]),
        ({"trait": "address.street", "op": "eq", "value": "Kerkstraat"}, ["trait"]),
        ({"trait": "plan", "op": "eq", "value": EMAIL}, ["trait"]),
        ({"trait": "email", "op": "exists"}, []),
        ({"trait": "plan", "op": "eq", "value": "pro"}, []),
        (
            {"event": "Signed Up", "where": [{"property": "phone", "op": "eq", "value": "x"}]},
            ["where[0]"],
        ),
        ({"not": {"crm": "job_title", "op": "eq", "value": "+31 6 1234 5678"}}, ["not.crm"]),
    ],
)
def test_personal_conditions_are_found_with_their_path(rule, paths):
    assert personal_conditions(rule) == paths


def test_a_segment_with_personal_conditions_makes_a_rule_using_it_personal():
    oracle = Segment.objects.create(name="Oracle", rule=ORACLE)
    assert personal_conditions({"any": [{"segment": oracle.pk}]}) == ["any[0].segment"]


def test_api_preview_and_save_refuse_personal_conditions_without_pii(anna, api_client_with_scopes):
    masked = api_client_with_scopes("profiles:read", "profiles:write")
    response = masked.post("/api/segments/preview/", {"rule": ORACLE}, format="json")
    assert response.status_code == 400
    assert "all[0].trait: a condition on personal data" in str(response.json()["errors"]["rule"])
    response = masked.post("/api/segments/", {"name": "O", "rule": ORACLE}, format="json")
    assert response.status_code == 400
    assert not Segment.objects.exists()

    allowed = api_client_with_scopes("profiles:read", "profiles:write", "pii:read")
    response = allowed.post("/api/segments/preview/", {"rule": ORACLE}, format="json")
    assert response.status_code == 200
    assert response.json()["count"] == 1
    # A condition on something else still works for the masked caller
    rule = {"trait": "plan", "op": "eq", "value": "pro"}
    assert masked.post("/api/segments/preview/", {"rule": rule}, format="json").json()["count"] == 1


def test_api_members_and_sizes_of_a_personal_segment_need_pii(anna, api_client_with_scopes):
    segment = Segment.objects.create(name="Oracle", rule=ORACLE)
    masked = api_client_with_scopes("profiles:read")
    for action in ("members", "sizes", "history", f"members/{anna.pk}"):
        response = masked.get(f"/api/segments/{segment.pk}/{action}/")
        assert response.status_code == 403, action
        assert "conditions on personal data" in response.json()["message"]
    allowed = api_client_with_scopes("profiles:read", "pii:read")
    assert allowed.get(f"/api/segments/{segment.pk}/members/").status_code == 200


def masked_segment_editor():
    """Staff who may edit segments but not see personal data (a custom role)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("editor", password="pw-1", is_staff=True)
    codenames = ["view_segment", "change_segment", "add_segment", "view_profile"]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_admin_preview_and_save_refuse_personal_conditions_for_a_masked_editor(anna):
    browser = Client()
    browser.force_login(masked_segment_editor())
    response = browser.post(
        reverse("admin:profiles_segment_preview"),
        data={"rule": ORACLE},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "a condition on personal data" in response.json()["errors"][0]
    response = browser.post(
        reverse("admin:profiles_segment_add"),
        {
            "name": "Oracle",
            "description": "",
            "kind": "dynamic",
            "rule": '{"trait": "email", "op": "starts_with", "value": "a"}',
            "refresh_interval_minutes": 60,
        },
    )
    assert response.status_code == 200
    assert "a condition on personal data" in response.content.decode()
    assert not Segment.objects.exists()


def test_admin_search_does_not_confirm_an_email_to_a_masked_role(anna, user_with_role, client):
    analyst = Client()
    analyst.force_login(user_with_role("Analyst"))
    url = reverse("admin:profiles_profile_changelist")
    assert f"/{anna.pk}/change/" not in analyst.get(url, {"q": EMAIL}).content.decode()
    assert f"/{anna.pk}/change/" in analyst.get(url, {"q": "u-anna"}).content.decode()
    identities = analyst.get(reverse("admin:profiles_identity_changelist"), {"q": EMAIL})
    assert identities.context["cl"].result_count == 0
    assert Identity.objects.filter(value=EMAIL).exists()


@pytest.mark.parametrize(
    "url",
    [
        f"/api/profiles/?identity={EMAIL}",
        f"/api/identities/?value={EMAIL}",
        "/api/identities/?kind=email&value=someone",
        f"/api/crm/contacts/?email={EMAIL}",
    ],
)
def test_api_lookups_by_personal_identifiers_need_pii(anna, api_client_with_scopes, url):
    Contact.objects.create(first_name="Anna", email=EMAIL)
    masked = api_client_with_scopes("profiles:read", "crm:read")
    response = masked.get(url)
    assert response.status_code == 403
    assert "personal data access" in response.json()["message"]
    allowed = api_client_with_scopes("profiles:read", "crm:read", "pii:read")
    assert allowed.get(url).status_code == 200
