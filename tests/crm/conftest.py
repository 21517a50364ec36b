from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from crm.models import AccountSuggestion, ContactMerge, DuplicateCandidate
from crm.selectors import VISIBILITY_RULES, visible_to
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
def hidden_records(sales_org, fresh):
    """One record of every model with a visibility rule that rival's team holds and me does
    not see, by model (rival's contact, its company, a deal, an activity...)."""
    rival = sales_org.rival
    contact = sales_org.contacts["rival"]
    other = factories.ContactFactory(owner=rival, company=contact.company)
    records = {
        type(record): record
        for record in (
            contact,
            contact.company,
            factories.DealFactory(owner=rival, company=contact.company, contact=contact),
            factories.ActivityFactory(owner=rival, contact=contact),
            factories.TicketFactory(owner=rival, contact=contact),
            factories.TaskFactory(owner=rival, contact=contact),
            DuplicateCandidate.objects.create(contact_a=contact, contact_b=other, score=0.9),
            ContactMerge.objects.create(survivor=contact, merged_id=0, merged_data={}),
            AccountSuggestion.objects.create(
                account=factories.CompanyFactory(owner=None, group_id="acct-1"),
                company=contact.company,
                domain="rival.example",
                reason="its domain is rival.example",
            ),
        )
    }
    assert set(records) == set(VISIBILITY_RULES), "add a hidden record of the new model"
    me = fresh(sales_org.me)
    for model, record in records.items():
        assert not visible_to(me, model.objects.filter(pk=record.pk)).exists()
    return records


@pytest.fixture
def fresh():
    """The user as a new request loads it: nothing cached from an earlier check."""

    def load(user):
        return get_user_model().objects.get(pk=user.pk)

    return load
