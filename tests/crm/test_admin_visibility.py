"""Sales team visibility in the admin: lists, pages, actions, exports, autocompletes, totals,
and the teams' own admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cdphub.pii import mask_value
from crm.admin.deals import DealAdmin
from crm.models import OUT_OF_SIGHT, Contact, DataExport, Deal, SalesTeam
from crm.selectors import VISIBILITY_RULES
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


def test_profile_page_does_not_name_a_hidden_company_of_a_visible_contact(me_client, sales_org):
    profile = factories.ProfileFactory()
    mine, rival = sales_org.contacts["me"], sales_org.contacts["rival"]
    rival.company.name = "Theircompany"
    rival.company.save()
    Contact.objects.filter(pk=mine.pk).update(profile=profile, company=rival.company)

    page = me_client.get(reverse("admin:profiles_profile_change", args=[profile.pk]))

    assert "Theircompany" not in page.content.decode()
    assert "(a record of another sales team)" in page.content.decode()


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
    assert many <= 16  # one of them lists the saved views


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


# --- Links to records out of sight ------------------------------------------------------------


def crm_forms(request):
    """(label, form) of every admin form, and inline row form, of a CRM model, as ``request``
    gets them: the add form of each registered admin (whatever app shows the inline)."""
    for model_admin in admin.site._registry.values():
        if model_admin.opts.app_label == "crm":
            yield type(model_admin).__name__, model_admin.get_form(request)()
        for inline_class in model_admin.inlines:
            if inline_class.model._meta.app_label == "crm":
                inline = inline_class(model_admin.model, admin.site)
                yield inline_class.__name__, inline.get_formset(request).form()


def test_every_admin_link_to_a_crm_record_offers_only_visible_records(
    rf, fresh, sales_org, hidden_records
):
    request = rf.get("/")
    request.user = fresh(sales_org.me)
    checked = []

    for label, form in crm_forms(request):
        for name, field in form.fields.items():
            queryset = getattr(field, "queryset", None)
            if queryset is None or queryset.model not in VISIBILITY_RULES:
                continue
            hidden = hidden_records[queryset.model]
            assert not queryset.filter(pk=hidden.pk).exists(), f"{label}.{name} offers it"
            checked.append(f"{label}.{name}")

    assert {"DealAdmin.contact", "ActivityAdmin.deal", "ContactAdmin.company"} <= set(checked)


def deal_form(stage, **fields) -> dict:
    data = {
        "name": "Poached",
        "pipeline": stage.pipeline_id,
        "stage": stage.pk,
        "amount": "100",
        "currency": "EUR",
        "probability": "10",
        "status": "open",
    }
    return {**data, **fields}


def test_admin_adds_a_deal_for_a_visible_contact(me_client, sales_org):
    stage = factories.StageFactory()
    mate = sales_org.contacts["mate"]

    response = me_client.post(reverse("admin:crm_deal_add"), deal_form(stage, contact=mate.pk))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Deal.objects.get(name="Poached").contact == mate


def test_admin_add_form_refuses_a_hidden_contact_like_a_missing_one(me_client, sales_org):
    stage = factories.StageFactory()
    hidden = sales_org.contacts["rival"]
    url = reverse("admin:crm_deal_add")

    refused = me_client.post(url, deal_form(stage, contact=hidden.pk))
    missing = me_client.post(url, deal_form(stage, contact=987654))

    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert errors == missing.context["adminform"].form.errors
    assert errors["contact"] == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    assert str(hidden) not in refused.content.decode()
    assert not Deal.objects.filter(name="Poached").exists()


@pytest.fixture
def my_deal_with_hidden_links(sales_org):
    """My deal, linked to rival's contact and company (they moved to rival's team since)."""
    hidden = sales_org.contacts["rival"]
    hidden.company.name = "Rivalco"
    hidden.company.save()
    deal = factories.DealFactory(
        name="Ours", owner=sales_org.me, contact=hidden, company=hidden.company
    )
    return deal


def test_deal_page_does_not_name_its_hidden_contact_or_company(
    me_client, my_deal_with_hidden_links
):
    deal = my_deal_with_hidden_links

    page = me_client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()

    assert str(deal.contact) not in page
    assert "Rivalco" not in page
    assert page.count(OUT_OF_SIGHT) == 2


def test_deal_list_does_not_name_a_hidden_contact_or_company(me_client, my_deal_with_hidden_links):
    page = me_client.get(reverse("admin:crm_deal_changelist")).content.decode()

    assert "Ours" in page
    assert str(my_deal_with_hidden_links.contact) not in page
    assert "Rivalco" not in page
    assert page.count(OUT_OF_SIGHT) == 2


def test_deal_export_does_not_name_a_hidden_company(me_client, my_deal_with_hidden_links):
    response = me_client.post(reverse("admin:crm_deal_export"), {"format": 0})

    body = response.content.decode()
    assert response.status_code == 200
    assert "Ours" in body
    assert "Rivalco" not in body
    assert OUT_OF_SIGHT in body


def test_saving_a_deal_keeps_its_hidden_contact(me_client, sales_org, my_deal_with_hidden_links):
    # Given the change form as the browser sends it back: the kept links are still selected
    deal = my_deal_with_hidden_links
    hidden = sales_org.contacts["rival"]
    data = deal_form(deal.stage, name="Renamed", contact=hidden.pk, company=hidden.company_id)

    response = me_client.post(reverse("admin:crm_deal_change", args=[deal.pk]), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    deal.refresh_from_db()
    assert (deal.name, deal.contact_id, deal.company_id) == (
        "Renamed",
        hidden.pk,
        hidden.company_id,
    )


def test_a_deal_cannot_be_moved_to_another_hidden_contact(
    me_client, sales_org, my_deal_with_hidden_links
):
    deal = my_deal_with_hidden_links
    other = factories.ContactFactory(owner=sales_org.rival)

    response = me_client.post(
        reverse("admin:crm_deal_change", args=[deal.pk]),
        deal_form(deal.stage, contact=other.pk, company=deal.company_id),
    )

    assert response.status_code == 200
    assert "contact" in response.context["adminform"].form.errors
    deal.refresh_from_db()
    assert deal.contact_id == sales_org.contacts["rival"].pk


def test_read_only_deal_page_does_not_name_its_hidden_links(
    client, user_with_role, sales_org, my_deal_with_hidden_links
):
    # Given an analyst (reads the CRM, no personal data) in team North
    analyst = user_with_role("Analyst", "analyst")
    sales_org.north.members.add(analyst)
    client.force_login(analyst)
    deal = my_deal_with_hidden_links

    page = client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()

    assert "Rivalco" not in page
    assert OUT_OF_SIGHT in page
    assert mask_value(deal.contact) not in page


def test_crm_panel_does_not_name_the_hidden_company_of_a_visible_contact(me_client, sales_org):
    # Given a profile whose contact I see, at a company of another team
    profile = factories.ProfileFactory()
    rivalco = factories.CompanyFactory(name="Rivalco", owner=sales_org.rival)
    Contact.objects.filter(pk=sales_org.contacts["mate"].pk).update(
        profile=profile, first_name="Ourcustomer", company=rivalco
    )

    response = me_client.get(reverse("admin:profiles_profile_change", args=[profile.pk]))

    (panel,) = [p for p in response.context["overview"]["panels"] if p["key"] == "crm"]
    (row,) = panel["data"]
    assert "Ourcustomer" in row["name"]
    assert row["company"] == OUT_OF_SIGHT
    assert "Rivalco" not in response.content.decode()


class RawIdDealAdmin(DealAdmin):
    raw_id_fields = ["owner", "contact"]
    autocomplete_fields = ["pipeline", "stage", "company"]


def test_raw_id_input_names_only_visible_contacts(rf, fresh, sales_org, my_deal_with_hidden_links):
    request = rf.get("/")
    request.user = fresh(sales_org.me)
    model_admin = RawIdDealAdmin(Deal, admin.site)
    deal = my_deal_with_hidden_links
    hidden = deal.contact
    typed = factories.ContactFactory(first_name="Typed", owner=sales_org.rival)
    mate = sales_org.contacts["mate"]

    kept = model_admin.get_form(request, deal, change=True)(instance=deal)
    add_form = model_admin.get_form(request)
    typed_in = add_form(data=deal_form(deal.stage, contact=typed.pk))
    visible = add_form(data=deal_form(deal.stage, contact=mate.pk))

    assert OUT_OF_SIGHT in str(kept["contact"])
    assert str(hidden) not in str(kept["contact"])
    assert "contact" in typed_in.errors
    assert "Typed" not in str(typed_in["contact"])
    assert visible.is_valid(), visible.errors
    assert str(mate) in str(visible["contact"])
