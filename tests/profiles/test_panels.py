"""The profile page is drawn from the panel registry: each app contributes its panel."""

from __future__ import annotations

import pytest

from profiles import panels
from profiles.selectors import profile_overview
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def test_every_app_has_its_panel_on_the_profile_page_in_order():
    keys = [panel.key for panel in panels.registered()]
    assert keys == [
        "identities",
        "consent",
        "computed",
        "crm",
        "accounts",
        "segments",
        "audiences",
        "merges",
    ]


def test_a_panel_needs_its_permission_and_masks_for_roles_without_personal_data(
    user_with_role,
):
    profile = ProfileFactory()
    IdentityFactory(profile=profile, kind="email", value="anna@example.com")

    sales = profile_overview(profile, pii=True, user=user_with_role("Sales"))
    analyst = profile_overview(profile, pii=False, user=user_with_role("Analyst"))

    assert "audiences" not in [p["key"] for p in sales["panels"]]  # Sales may not read the DMP
    assert "audiences" in [p["key"] for p in analyst["panels"]]
    (identities,) = [p for p in analyst["panels"] if p["key"] == "identities"]
    assert "anna@example.com" not in str(identities["data"])
