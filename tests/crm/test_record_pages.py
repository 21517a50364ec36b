"""Contact, company and deal pages show what is linked to the record (deals, tickets, tasks)
and one timeline, as the viewer's sales team sees them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from crm import services
from crm.models import Activity, Deal
from crm.selectors import ASSOCIATION_SAMPLE, record_associations, record_timeline
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_company_page_lists_its_deals_and_tickets_with_links(admin_client):
    company = factories.CompanyFactory(name="Acme")
    deal = factories.DealFactory(company=company, name="Acme renewal", amount=4200)
    factories.TicketFactory(company=company, subject="Invoice is wrong", contact=None)

    html = admin_client.get(reverse("admin:crm_company_change", args=[company.pk])).content
    html = html.decode()

    assert reverse("admin:crm_deal_change", args=[deal.pk]) in html
    assert "Acme renewal" in html and "Open · EUR 4,200" in html
    assert "Invoice is wrong" in html
    assert reverse("admin:crm_ticket_add") + f"?company={company.pk}" in html


def test_many_linked_records_show_a_few_and_link_to_all_of_them(admin_client):
    contact = factories.ContactFactory()
    for number in range(ASSOCIATION_SAMPLE + 2):
        factories.TaskFactory(contact=contact, title=f"Task {number}")

    html = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk])).content
    html = html.decode()

    link = reverse("admin:crm_task_changelist") + f"?contact__id__exact={contact.pk}"
    assert f'<a href="{link}">All {ASSOCIATION_SAMPLE + 2} tasks</a>' in html
    listed = admin_client.get(link)
    assert listed.context["cl"].result_count == ASSOCIATION_SAMPLE + 2


def test_open_records_come_first(superuser):
    contact = factories.ContactFactory()
    done = factories.TaskFactory(contact=contact, title="Done")
    done.done_at = done.created_at
    done.save()
    waiting = factories.TaskFactory(contact=contact, title="Waiting")

    tasks = record_associations(record=contact, user=superuser)[2]

    assert [task.title for task in tasks.records] == ["Waiting", "Done"]
    assert waiting in tasks.records


def test_associations_and_timelines_hold_only_what_the_team_sees(sales_org, fresh):
    company = sales_org.contacts["nobody"].company  # unassigned: every team sees it
    factories.DealFactory(company=company, owner=sales_org.rival, name="Rival deal")
    factories.DealFactory(company=company, owner=sales_org.me, name="My deal")
    me = fresh(sales_org.me)

    deals = record_associations(record=company, user=me)[0]
    timeline = record_timeline(record=company, user=me)

    assert [deal.name for deal in deals.records] == ["My deal"] and deals.count == 1
    assert {entry["detail"] for entry in timeline} == {"My deal"}


def test_a_company_timeline_has_its_contacts_activities_and_its_deals_moves(superuser):
    company = factories.CompanyFactory()
    contact = factories.ContactFactory(company=company)
    factories.ActivityFactory(contact=contact, company=None, kind=Activity.Kind.CALL, subject="Hi")
    deal = factories.DealFactory(company=company, contact=contact, name="Big one")
    won = factories.StageFactory(pipeline=deal.pipeline, name="Won", is_won=True)
    services.deal_move(deal=deal, stage=won, from_stage_id=None)
    factories.TicketFactory(company=company, subject="Broken")

    entries = {(e["what"], e["detail"]) for e in record_timeline(record=company, user=superuser)}

    assert {("Call", "Hi"), ("Deal moved", "Big one to Won"), ("Deal won", "Big one")} <= entries
    assert ("Ticket opened", "Broken") in entries


def test_a_deal_page_has_its_tasks_and_its_timeline(admin_client):
    deal = factories.DealFactory(name="Renewal")
    factories.TaskFactory(deal=deal, contact=None, title="Send the quote")
    factories.ActivityFactory(deal=deal, kind=Activity.Kind.MEETING, subject="Kick-off")
    proposal = factories.StageFactory(pipeline=deal.pipeline, name="Proposal")
    services.deal_move(deal=Deal.objects.get(pk=deal.pk), stage=proposal, from_stage_id=None)

    html = admin_client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()

    assert "Send the quote" in html
    assert "Kick-off" in html and "Renewal to Proposal" in html
