"""The contact page for a sales rep's day: may I call, e-mail or text them (their consent, from
the CDP profile), the profile one click away, log a call / e-mail / meeting / note in one click
(linked to the contact, its company and its open deal, owned by me, done now), and one timeline
of activities and deal changes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from consent.services import consent_record
from crm.models import Activity, Deal
from tests.factories import ActivityFactory, ContactFactory, DealFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    profile = ProfileFactory()
    person = ContactFactory(first_name="Anna", profile=profile)
    consent_record(profile=profile, purpose="email_marketing", status="granted", method="web_form")
    consent_record(profile=profile, purpose="phone", status="denied", method="web_form")
    return person


def test_the_page_says_whether_we_may_reach_them_and_links_the_profile(admin_client, contact):
    page = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk]))
    html = page.content.decode()
    assert 'E-mail marketing</th><td class="consent-granted">yes (consent given)' in html
    assert 'Phone marketing</th><td class="consent-denied">no (refused)' in html
    assert 'SMS marketing</th><td class="consent-unknown">no (no consent recorded)' in html
    assert reverse("admin:profiles_profile_change", args=[contact.profile_id]) in html


def test_logging_a_call_is_one_click_to_a_filled_in_form(admin_client, superuser, contact):
    deal = DealFactory(contact=contact, company=contact.company, name="Renewal")
    html = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk])).content.decode()
    link = next(
        part.split('"')[0]
        for part in html.split('href="')
        if part.startswith(reverse("admin:crm_activity_add")) and "kind=call" in part.split('"')[0]
    ).replace("&amp;", "&")
    query = parse_qs(urlsplit(link).query)
    assert query["contact"] == [str(contact.pk)] and query["deal"] == [str(deal.pk)]
    form = admin_client.get(link)
    initial = form.context["adminform"].form.initial
    assert initial["owner"] == superuser.pk and initial["kind"] == "call"
    assert initial["done_at"] is not None


def test_one_timeline_of_activities_and_deal_changes(admin_client, contact):
    ActivityFactory(contact=contact, kind=Activity.Kind.CALL, subject="Intro call")
    deal = DealFactory(contact=contact, name="Big one")
    Deal.objects.filter(pk=deal.pk).update(status=Deal.Status.WON, closed_at=deal.created_at)
    html = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk])).content.decode()
    assert "Intro call" in html and "Deal opened" in html and "Deal won" in html


def test_company_and_deal_pages_log_an_activity_in_one_click(admin_client, contact):
    deal = DealFactory(contact=contact, company=contact.company)
    company_page = admin_client.get(reverse("admin:crm_company_change", args=[contact.company_id]))
    assert f"company={contact.company_id}&amp;kind=meeting" in company_page.content.decode()
    deal_page = admin_client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()
    assert f"contact={contact.pk}&amp;company={deal.company_id}&amp;kind=note" in deal_page
    assert f"deal={deal.pk}" in deal_page


def test_the_timeline_shows_only_what_the_viewer_s_team_sees(client, sales_org):
    shared = sales_org.contacts["nobody"]  # unassigned: every team sees it
    # An activity on a record the viewer sees is seen with it (the activities' visibility rule);
    # another team's deal is not, nor what happened to it.
    ActivityFactory(contact=shared, owner=sales_org.rival, subject="Call on the shared contact")
    DealFactory(contact=shared, company=shared.company, owner=sales_org.rival, name="Rival deal")
    client.force_login(sales_org.me)
    page = client.get(reverse("admin:crm_contact_change", args=[shared.pk])).content.decode()
    assert "Call on the shared contact" in page
    assert "Rival deal" not in page
    client.force_login(sales_org.rival)
    page = client.get(reverse("admin:crm_contact_change", args=[shared.pk])).content.decode()
    assert "Rival deal" in page


def log_call_form(contact, **fields):
    return {
        "kind": "call",
        "subject": "Talked about the renewal",
        "outcome": "connected",
        "body": "Wants a quote by Friday.",
        "done_at_0": "2026-12-01",
        "done_at_1": "10:30:00",
        "contact": contact.pk,
        "company": contact.company_id,
        **fields,
    }


def test_a_logged_call_goes_back_to_the_contact_page_and_shows_on_its_timeline(
    admin_client, contact
):
    page = reverse("admin:crm_contact_change", args=[contact.pk])
    add = reverse("admin:crm_activity_add") + f"?contact={contact.pk}&kind=call&return_to={page}"

    answer = admin_client.post(add, log_call_form(contact), follow=True)

    assert answer.redirect_chain[-1][0] == page
    html = answer.content.decode()
    assert "Call logged." in html
    assert "Call - Connected" in html and "Talked about the renewal" in html


def test_a_return_address_on_another_site_is_ignored(admin_client, contact):
    add = reverse("admin:crm_activity_add") + "?kind=call&return_to=https://evil.example/"

    answer = admin_client.post(add, log_call_form(contact))

    assert answer.status_code == 302
    assert "evil.example" not in answer["Location"]


@pytest.mark.parametrize(
    ("kind", "outcome", "message"),
    [
        ("call", "held", "A call's outcome is one of: Connected, Left voicemail"),
        ("note", "connected", "A note has no outcome."),
    ],
)
def test_an_outcome_that_does_not_fit_the_kind_is_refused(
    admin_client, api_client_with_scopes, contact, kind, outcome, message
):
    form = log_call_form(contact, kind=kind, outcome=outcome)
    page = admin_client.post(reverse("admin:crm_activity_add"), form)
    api = api_client_with_scopes("crm:write").post(
        "/api/crm/activities/",
        {"kind": kind, "outcome": outcome, "subject": "x", "contact": contact.pk},
        format="json",
    )

    assert page.status_code == 200
    assert message in " ".join(page.context["adminform"].form.errors["outcome"])
    assert api.status_code == 400 and message in str(api.json())
    assert not Activity.objects.exists()
