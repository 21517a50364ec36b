"""The roles matrix: each role can do what it needs, no more, and sees PII only if it needs it."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model

from cdphub.admin_site import NAVIGATION
from cdphub.roles import ROLES
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

EVERYONE = {"Marketer", "Sales", "Sales manager", "Privacy officer", "Data engineer", "Analyst"}

MATRIX = {
    "cdphub.view_auditentry": {"Privacy officer", "Data engineer"},
    # permission: roles that have it
    "profiles.view_profile": EVERYONE,
    "profiles.change_profile": {"Marketer", "Privacy officer", "Data engineer"},
    "profiles.delete_profile": {"Privacy officer", "Data engineer"},
    "profiles.add_source": {"Marketer", "Privacy officer", "Data engineer"},
    "profiles.view_pii": {"Marketer", "Sales", "Sales manager", "Privacy officer"},
    "crm.view_contact": EVERYONE,
    "crm.change_contact": {"Sales", "Sales manager"},
    "crm.delete_deal": {"Sales", "Sales manager"},
    "crm.view_salesteam": EVERYONE,
    "crm.add_salesteam": {"Sales manager"},
    "crm.change_salesteam": {"Sales manager"},
    "crm.delete_salesteam": {"Sales manager"},
    "audiences.change_audience": {"Marketer", "Data engineer"},
    "audiences.view_visitor": {"Marketer", "Privacy officer", "Data engineer", "Analyst"},
    "consent.view_consentrecord": EVERYONE,
    "consent.add_consentrecord": {"Privacy officer"},
    "consent.change_consentrecord": set(),
    "consent.delete_consentrecord": set(),
    "consent.change_datasubjectrequest": {"Privacy officer"},
    "consent.view_datasubjectrequest": {"Privacy officer"},
    "consent.view_suppression": {"Privacy officer"},
    "consent.view_consentstate": EVERYONE,
    "cdphub.view_apikey": {"Data engineer"},
    "cdphub.add_apikey": set(),
    "auth.change_user": set(),
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_has_exactly_the_permissions_of_the_matrix(role, user_with_role):
    user = user_with_role(role)
    user = get_user_model().objects.get(pk=user.pk)  # fresh permission cache

    granted = {perm for perm in MATRIX if user.has_perm(perm)}

    assert granted == {perm for perm, roles in MATRIX.items() if role in roles}


def test_analyst_can_change_nothing(user_with_role):
    analyst = get_user_model().objects.get(pk=user_with_role("Analyst").pk)

    assert analyst.get_all_permissions()
    assert all(perm.split(".")[1].startswith("view_") for perm in analyst.get_all_permissions())


def test_roles_sync_is_idempotent(roles):
    from cdphub.roles import roles_sync

    first = roles_sync()
    second = roles_sync()

    assert first == second
    assert all(count > 0 for count in first.values())


@pytest.mark.parametrize(
    ("role", "sees_pii"), [("Marketer", True), ("Analyst", False), ("Data engineer", False)]
)
def test_profile_admin_masks_pii_for_roles_without_it(client, user_with_role, role, sees_pii):
    profile = ProfileFactory(
        traits={"email": "anna@example.com", "firstName": "Anna", "lastName": "Visser"}
    )
    IdentityFactory(profile=profile, value="anna@example.com")
    client.force_login(user_with_role(role))

    pages = [
        client.get("/admin/profiles/profile/").content.decode(),
        client.get(f"/admin/profiles/profile/{profile.pk}/change/").content.decode(),
        client.get("/admin/profiles/identity/").content.decode(),
    ]

    for page in pages:
        assert ("anna@example.com" in page) is sees_pii
    assert ("Visser" in pages[1]) is sees_pii


def test_role_without_pii_cannot_edit_pii_through_the_admin_form(client, user_with_role):
    profile = ProfileFactory(traits={"email": "anna@example.com"})
    client.force_login(user_with_role("Data engineer"))

    client.post(
        f"/admin/profiles/profile/{profile.pk}/change/",
        {
            "traits": '{"email": "evil@example.com"}',
            "identities-TOTAL_FORMS": "0",
            "identities-INITIAL_FORMS": "0",
        },
    )

    profile.refresh_from_db()
    assert profile.traits == {"email": "anna@example.com"}


def test_the_main_menu_is_by_task_with_internal_tables_last(admin_client):
    page = admin_client.get("/admin/").content.decode()

    groups = [name for name, _ in NAVIGATION]
    positions = [page.index(f">{name}</a>") for name in groups]
    assert positions == sorted(positions)
    internals = page.index(">History and internals</a>")
    assert page.index("Segment membership changes") > internals
    assert page.index("Audit entries") > internals
    assert "<title>Dashboard | cdphub</title>" in page


def test_every_admin_list_has_its_place_in_the_menu_once():
    placed = [label for _, labels in NAVIGATION for label in labels]
    registered = {model._meta.label_lower for model in admin.site._registry}

    assert sorted(placed) == sorted(registered)  # none missing, none unknown, none twice


def test_a_role_sees_only_the_lists_it_may_open_in_their_groups(client, user_with_role):
    client.force_login(user_with_role("Sales"))

    groups = client.get("/admin/").context["available_apps"]

    assert [group["name"] for group in groups][:2] == ["People", "Sales"]
    shown = {model["object_name"] for group in groups for model in group["models"]}
    assert "Deal" in shown and "Segment" in shown  # sales may look at segments
    assert "DataSubjectRequest" not in shown and "ApiKey" not in shown


def test_an_apps_own_page_still_lists_it_by_app(admin_client):
    response = admin_client.get("/admin/crm/")

    assert [app["app_label"] for app in response.context["app_list"]] == ["crm"]


def test_a_refused_admin_page_says_which_roles_may_open_it(client, user_with_role):
    client.force_login(user_with_role("Analyst"))
    response = client.get("/admin/crm/contact/add/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "You may not add contacts" in page
    assert "This needs one of these roles: <strong>Sales, Sales manager</strong>" in page
    assert 'id="site-name"' in page  # the admin's own look
    response = client.get("/admin/consent/suppression/")
    assert "You may not see suppressions" in response.content.decode()
    assert "Privacy officer" in response.content.decode()


def test_the_site_root_and_view_site_lead_to_the_admin(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert 'href="/admin/">View site' in admin_client.get("/admin/").content.decode()
