from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from crm.models import SalesTeam
from crm.selectors import visible_owner_ids

pytestmark = pytest.mark.django_db


def test_dev_users_get_one_user_per_role_and_a_demo_sales_team(settings, roles, tmp_path):
    settings.DEBUG = True  # development users only
    settings.BASE_DIR = tmp_path  # the password file goes under var/ of this directory

    call_command("ensure_dev_superuser")
    call_command("ensure_dev_superuser")  # a second run changes nothing

    users = get_user_model().objects
    sales, manager = users.get(username="sales"), users.get(username="salesmanager")
    team = SalesTeam.objects.get()
    assert team.manager == manager
    assert list(team.members.all()) == [sales]
    assert visible_owner_ids(sales) == {sales.pk, manager.pk}
    assert visible_owner_ids(users.get(username="marketer")) is None  # in no team: everything
    assert (tmp_path / "var" / "dev-admin-password").exists()
