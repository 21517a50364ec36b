"""Record visibility: whose CRM records a person sees, as their sales teams say."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from crm.models import (
    Activity,
    Company,
    Contact,
    ContactMerge,
    Deal,
    DuplicateCandidate,
    SalesTeam,
    Task,
    Ticket,
)
from crm.selectors import visible_owner_ids, visible_to
from tests import factories

pytestmark = pytest.mark.django_db

EVERYONE = {"me", "mate", "rival", "lead", "nobody"}


def seen(user, model=Contact) -> set[str]:
    """Surnames of the visible contacts, or of the contacts the visible records are about."""
    rows = visible_to(user, model.objects.all())
    if model is Contact:
        return set(rows.values_list("last_name", flat=True))
    return set(rows.values_list("contact__last_name", flat=True))


def test_without_teams_everyone_sees_everything(user_with_role, fresh):
    # Given a deployment where no team is configured yet
    sales = user_with_role("Sales")
    for name in ("a", "b"):
        factories.ContactFactory(last_name=name, owner=factories.StaffUserFactory())

    assert visible_owner_ids(sales) is None
    assert seen(sales) == {"a", "b"}


def test_member_sees_own_team_and_unassigned_records_not_other_teams(sales_org, fresh):
    assert seen(fresh(sales_org.me)) == {"me", "mate", "lead", "nobody"}
    assert seen(fresh(sales_org.rival)) == {"rival", "nobody"}


def test_own_records_setting(sales_org, fresh):
    SalesTeam.objects.filter(pk=sales_org.north.pk).update(visibility=SalesTeam.Visibility.OWN)

    assert seen(fresh(sales_org.me)) == {"me", "nobody"}
    # the lead still oversees the whole team
    assert seen(fresh(sales_org.lead)) == {"me", "mate", "lead", "nobody"}


def test_all_records_setting(sales_org, fresh):
    SalesTeam.objects.filter(pk=sales_org.north.pk).update(visibility=SalesTeam.Visibility.ALL)

    assert visible_owner_ids(fresh(sales_org.me)) is None
    assert seen(fresh(sales_org.me)) == EVERYONE
    assert seen(fresh(sales_org.rival)) == {"rival", "nobody"}


def test_superuser_sees_everything_even_in_a_team(sales_org, superuser, fresh):
    sales_org.south.members.add(superuser)

    assert seen(fresh(superuser)) == EVERYONE


def test_users_outside_every_team_are_not_limited(sales_org, user_with_role, fresh):
    assert seen(fresh(user_with_role("Marketer"))) == EVERYONE


def test_anonymous_sees_nothing(sales_org):
    assert seen(AnonymousUser()) == set()


def test_in_two_teams_the_most_permissive_wins(sales_org, fresh):
    # Given me in North, which only shows own records, and also in South, which shows its team's
    SalesTeam.objects.filter(pk=sales_org.north.pk).update(visibility=SalesTeam.Visibility.OWN)
    sales_org.south.members.add(sales_org.me)

    # then me sees South's records, but not North's colleagues'
    assert seen(fresh(sales_org.me)) == {"me", "rival", "nobody"}

    # and a third team showing all records opens everything
    factories.SalesTeamFactory(visibility=SalesTeam.Visibility.ALL, members=[sales_org.me])
    assert seen(fresh(sales_org.me)) == EVERYONE


def test_a_lead_outside_the_member_list_is_part_of_the_team(sales_org, fresh):
    assert "lead" in seen(fresh(sales_org.mate))
    assert not sales_org.north.members.filter(pk=sales_org.lead.pk).exists()


def test_companies_and_deals_follow_their_own_owner(sales_org, fresh):
    me = fresh(sales_org.me)
    factories.DealFactory(owner=sales_org.rival, contact=sales_org.contacts["me"])
    my_deal = factories.DealFactory(owner=me, contact=sales_org.contacts["rival"])

    assert set(visible_to(me, Deal.objects.all())) == {my_deal}
    assert set(
        visible_to(me, Company.objects.filter(contacts__in=sales_org.contacts.values()))
    ) == {sales_org.contacts[name].company for name in ("me", "mate", "lead", "nobody")}


@pytest.mark.parametrize("factory", [factories.ActivityFactory, factories.TaskFactory])
def test_unowned_records_follow_the_record_they_are_on(sales_org, fresh, factory):
    for contact in sales_org.contacts.values():
        factory(contact=contact, owner=None)

    assert seen(fresh(sales_org.me), factory._meta.model) == {"me", "mate", "lead", "nobody"}


def test_owned_activity_is_seen_with_its_owner_or_with_its_record(sales_org, fresh):
    contacts = sales_org.contacts
    # the rival called one of my contacts, and one of their own
    factories.ActivityFactory(contact=contacts["me"], owner=sales_org.rival)
    factories.ActivityFactory(contact=contacts["rival"], owner=sales_org.rival)
    # the mate wrote a note on the rival's contact
    factories.ActivityFactory(contact=contacts["rival"], owner=sales_org.mate, subject="mate's")

    visible = visible_to(fresh(sales_org.me), Activity.objects.all())

    assert {(a.contact.last_name, a.owner.username) for a in visible} == {
        ("me", "rival"),
        ("rival", "mate"),
    }


def test_activity_on_a_visible_deal_of_an_invisible_contact(sales_org, fresh):
    deal = factories.DealFactory(owner=sales_org.mate, contact=sales_org.contacts["rival"])
    on_deal = factories.ActivityFactory(contact=sales_org.contacts["rival"], deal=deal)
    factories.ActivityFactory(contact=sales_org.contacts["rival"])

    assert list(visible_to(fresh(sales_org.me), Activity.objects.all())) == [on_deal]


def test_tickets_follow_contact_or_company(sales_org, fresh):
    rival_contact = sales_org.contacts["rival"]
    factories.TicketFactory(contact=rival_contact)
    via_company = factories.TicketFactory(contact=None, company=sales_org.contacts["me"].company)
    unlinked = factories.TicketFactory(contact=None)

    assert set(visible_to(fresh(sales_org.me), Ticket.objects.all())) == {via_company, unlinked}


def test_duplicate_pair_needs_both_contacts_visible(sales_org, fresh):
    def pair(a, b):
        a, b = sorted([sales_org.contacts[a], sales_org.contacts[b]], key=lambda c: c.pk)
        return DuplicateCandidate.objects.create(contact_a=a, contact_b=b, score=0.9)

    ours = pair("me", "mate")
    pair("me", "rival")

    assert list(visible_to(fresh(sales_org.me), DuplicateCandidate.objects.all())) == [ours]


def test_merge_record_follows_its_survivor(sales_org, fresh):
    for name in ("me", "rival"):
        ContactMerge.objects.create(
            survivor=sales_org.contacts[name], merged_id=999, merged_data={"last_name": name}
        )
    ContactMerge.objects.create(survivor=None, merged_id=998, merged_data={})

    visible = visible_to(fresh(sales_org.me), ContactMerge.objects.all())

    assert [m.survivor.last_name for m in visible] == ["me"]


def test_visibility_is_one_condition_without_joins_for_owned_records(sales_org, fresh):
    sql = str(visible_to(fresh(sales_org.me), Contact.objects.all()).query)

    assert "JOIN" not in sql
    assert '"crm_contact"."owner_id" IN' in sql


def test_tasks_of_a_visible_deal(sales_org, fresh):
    deal = factories.DealFactory(owner=sales_org.me, contact=sales_org.contacts["rival"])
    task = factories.TaskFactory(contact=None, deal=deal)
    factories.TaskFactory(contact=None, deal=factories.DealFactory(owner=sales_org.rival))

    assert list(visible_to(fresh(sales_org.me), Task.objects.all())) == [task]
