from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from tests import factories


@pytest.fixture
def sales_org(user_with_role):
    """Two sales teams seeing their team's records: North (me and mate, led by lead) and South
    (rival). Each of them owns one contact, surnamed after them; one contact is unassigned."""
    me = user_with_role("Sales", "me")
    mate = user_with_role("Sales", "mate")
    rival = user_with_role("Sales", "rival")
    lead = user_with_role("Sales manager", "lead")
    north = factories.SalesTeamFactory(name="North", members=[me, mate], manager=lead)
    south = factories.SalesTeamFactory(name="South", members=[rival])
    owners = {"me": me, "mate": mate, "rival": rival, "lead": lead, "nobody": None}
    contacts = {
        name: factories.ContactFactory(last_name=name, owner=owner, company__owner=owner)
        for name, owner in owners.items()
    }
    return SimpleNamespace(
        me=me, mate=mate, rival=rival, lead=lead, north=north, south=south, contacts=contacts
    )


@pytest.fixture
def fresh():
    """The user as a new request loads it: nothing cached from an earlier check."""

    def load(user):
        return get_user_model().objects.get(pk=user.pk)

    return load
