"""Sales team visibility in the admin: lists, pages, actions, exports, autocompletes, totals,
and the teams' own admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import Contact, DataExport, SalesTeam
from tests import factories

pytestmark = pytest.mark.django_db

MINE = ("me", "mate", "lead", "nobody")


@pytest.fixture
def me_client(client, sales_org):
    client.force_login(sales_org.me)
    return client


def test_changelist_lists_only_visible_records(me_client, sales_org):
    response = me_client.get(reverse("admin:crm_contact_changelist"))

    page = response.content.decode()
    assert response.status_code == 200
    assert response.context["cl"].result_count == len(MINE)
    assert all(sales_org.contacts[name].email in page for name in MINE)
    assert sales_org.contacts["rival"].email not in page


def test_superuser_changelist_lists_everything(admin_client, sales_org):
    response = admin_client.get(reverse("admin:crm_contact_changelist"))

    assert response.context["cl"].result_count == len(sales_org.contacts)


@pytest.mark.parametrize("page", ["change", "delete", "history"])
def test_pages_of_an_invisible_record_are_404(me_client, sales_org, page):
    rival = sales_org.contacts["rival"]
    mine = sales_org.contacts["mate"]

    assert me_client.get(reverse(f"admin:crm_contact_{page}", args=[mine.pk])).status_code == 200
    assert me_client.get(reverse(f"admin:crm_contact_{page}", args=[rival.pk])).status_code == 404


def test_a_missing_record_is_404_too(me_client):
    assert me_client.get(reverse("admin:crm_contact_change", args=[987654])).status_code == 404


def test_posting_the_change_form_of_an_invisible_record_changes_nothing(me_client, sales_org):
    rival = sales_org.contacts["rival"]

    response = me_client.post(
        reverse("admin:crm_contact_change", args=[rival.pk]), {"last_name": "Taken"}
    )

    assert response.status_code == 404
    rival.refresh_from_db()
    assert rival.last_name == "rival"


def test_action_ignores_invisible_records(me_client, sales_org):
    mine, rival = sales_org.contacts["nobody"], sales_org.contacts["rival"]

    me_client.post(
        reverse("admin:crm_contact_changelist"),
        {
            "action": "assign_owner",
            "_selected_action": [mine.pk, rival.pk],
            "owner": sales_org.me.pk,
        },
    )

    owners = dict(Contact.objects.values_list("pk", "owner_id"))
    assert owners[mine.pk] == sales_org.me.pk
    assert owners[rival.pk] == sales_org.rival.pk


def test_export_holds_only_visible_records(me_client, sales_org):
    response = me_client.post(reverse("admin:crm_contact_export"), {"format": 0})

    body = response.content.decode()
    assert response.status_code == 200
    assert sales_org.contacts["mate"].email in body
    assert sales_org.contacts["rival"].email not in body
    assert DataExport.objects.get().row_count == len(MINE)


def test_deal_totals_per_stage_count_only_visible_deals(me_client, sales_org):
    stage = factories.StageFactory(name="Proposal")
    factories.DealFactory(stage=stage, owner=sales_org.me, amount=Decimal("100"))
    factories.DealFactory(stage=stage, owner=sales_org.mate, amount=Decimal("200"))
    factories.DealFactory(stage=stage, owner=sales_org.rival, amount=Decimal("5000"))

    response = me_client.get(reverse("admin:crm_deal_changelist"))

    totals = response.context["stage_totals"]
    assert [(t["stage__name"], t["count"], t["total"]) for t in totals] == [
        ("Proposal", 2, Decimal("300.00"))
    ]
    assert response.context["cl"].result_count == 2


def test_autocomplete_offers_only_visible_records(me_client, sales_org):
    response = me_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "crm", "model_name": "deal", "field_name": "contact", "term": ""},
    )

    ids = {int(row["id"]) for row in response.json()["results"]}
    assert ids == {sales_org.contacts[name].pk for name in MINE}


def test_company_page_lists_only_visible_contacts(me_client, sales_org):
    company = factories.CompanyFactory(owner=sales_org.me)
    ours = factories.ContactFactory(company=company, owner=sales_org.mate)
    theirs = factories.ContactFactory(company=company, owner=sales_org.rival)

    page = me_client.get(reverse("admin:crm_company_change", args=[company.pk])).content.decode()

    assert ours.email in page
    assert theirs.email not in page


def test_profile_page_lists_only_visible_contacts(me_client, sales_org):
    profile = factories.ProfileFactory()
    Contact.objects.filter(pk=sales_org.contacts["mate"].pk).update(
        profile=profile, first_name="Ourcustomer"
    )
    Contact.objects.filter(pk=sales_org.contacts["rival"].pk).update(
        profile=profile, first_name="Theircustomer"
    )

    page = me_client.get(reverse("admin:profiles_profile_change", args=[profile.pk]))

    assert page.status_code == 200
    assert "Ourcustomer" in page.content.decode()
    assert "Theircustomer" not in page.content.decode()


def test_related_counts_count_only_visible_records(me_client, sales_org):
    tag = factories.TagFactory()
    for name in ("me", "rival"):
        sales_org.contacts[name].tags.add(tag)
    stage = factories.StageFactory()
    for owner in (sales_org.mate, sales_org.rival, sales_org.rival):
        factories.DealFactory(stage=stage, owner=owner)

    tags = me_client.get(reverse("admin:crm_tag_changelist")).context["cl"].result_list
    pipelines = me_client.get(reverse("admin:crm_pipeline_changelist")).context["cl"].result_list

    assert [t.contact_total for t in tags] == [1]
    assert [p.deal_total for p in pipelines if p.pk == stage.pipeline_id] == [1]


def test_restricted_changelist_needs_no_query_per_row(client, sales_org):
    # Given me's team owning a few contacts, then ten times as many
    client.force_login(sales_org.me)
    url = reverse("admin:crm_contact_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    few = queries()
    for owner in (sales_org.me, sales_org.mate, sales_org.rival):
        factories.ContactFactory.create_batch(15, owner=owner)
    many = queries()

    assert many == few
    assert many <= 15


# --- The teams' own admin -------------------------------------------------------------------


def test_sales_reads_teams_but_cannot_change_them(me_client, sales_org):
    assert me_client.get(reverse("admin:crm_salesteam_changelist")).status_code == 200
    assert me_client.get(reverse("admin:crm_salesteam_add")).status_code == 403
    response = me_client.post(
        reverse("admin:crm_salesteam_change", args=[sales_org.north.pk]),
        {"name": "North", "visibility": "all", "members": [sales_org.me.pk]},
    )

    assert response.status_code == 403
    assert SalesTeam.objects.get(pk=sales_org.north.pk).visibility == "team"


def test_sales_manager_creates_a_team(client, sales_org):
    client.force_login(sales_org.lead)

    response = client.post(
        reverse("admin:crm_salesteam_add"),
        {
            "name": "Key accounts",
            "visibility": "own",
            "manager": sales_org.lead.pk,
            "members": [sales_org.rival.pk, sales_org.mate.pk],
        },
    )

    assert response.status_code == 302, response.context["adminform"].errors
    team = SalesTeam.objects.get(name="Key accounts")
    assert set(team.members.all()) == {sales_org.rival, sales_org.mate}


def test_team_with_an_unknown_visibility_is_refused(client, sales_org):
    client.force_login(sales_org.lead)

    response = client.post(
        reverse("admin:crm_salesteam_add"), {"name": "Odd", "visibility": "some"}
    )

    assert response.status_code == 200
    assert "visibility" in response.context["adminform"].errors
    assert not SalesTeam.objects.filter(name="Odd").exists()


def test_teams_changelist_shows_member_counts(admin_client, sales_org):
    response = admin_client.get(reverse("admin:crm_salesteam_changelist"))

    counts = {team.name: team.member_total for team in response.context["cl"].result_list}
    assert counts == {"North": 2, "South": 1}
