from decimal import Decimal

import pytest
from django.urls import reverse

from crm.models import Contact, Deal
from tests import factories

pytestmark = pytest.mark.django_db

ROWS = 30


def many_contacts():
    owner = factories.ContactFactory._meta.model._meta.get_field("owner").related_model
    user = owner.objects.create_user("seller", is_staff=True)
    company = factories.CompanyFactory(owner=user)
    return factories.ContactFactory.create_batch(ROWS, company=company, owner=user)


def many_deals():
    stage = factories.StageFactory()
    contacts = many_contacts()
    return [
        factories.DealFactory(stage=stage, contact=c, company=c.company, owner=c.owner)
        for c in contacts
    ]


MAKERS = {
    "tag": lambda: factories.TagFactory.create_batch(ROWS),
    "company": lambda: factories.CompanyFactory.create_batch(ROWS),
    "contact": many_contacts,
    "pipeline": lambda: [stage.pipeline for stage in factories.StageFactory.create_batch(ROWS)],
    "stage": lambda: factories.StageFactory.create_batch(ROWS),
    "deal": many_deals,
    "activity": lambda: [factories.ActivityFactory(contact=c) for c in many_contacts()],
    "ticket": lambda: [factories.TicketFactory(contact=c) for c in many_contacts()],
    "task": lambda: [factories.TaskFactory(contact=c) for c in many_contacts()],
}


@pytest.mark.parametrize("model", list(MAKERS))
def test_changelist_renders_with_bounded_queries(
    model, admin_client, django_assert_max_num_queries
):
    MAKERS[model]()
    url = reverse(f"admin:crm_{model}_changelist")

    # Constant whatever the rows: one reads the custom fields' definitions, one the list's
    # saved views.
    with django_assert_max_num_queries(17):
        response = admin_client.get(url)

    assert response.status_code == 200
    assert response.context["cl"].result_count == ROWS


@pytest.mark.parametrize("model", list(MAKERS))
def test_change_and_add_pages_render(model, admin_client):
    row = MAKERS[model]()[0]

    change = admin_client.get(reverse(f"admin:crm_{model}_change", args=[row.pk]))
    add = admin_client.get(reverse(f"admin:crm_{model}_add"))

    assert change.status_code == 200
    assert add.status_code == 200


def test_contact_changelist_masks_pii_for_analyst(client, user_with_role):
    contact = factories.ContactFactory(email="secret@example.com", last_name="Verborgen")
    client.force_login(user_with_role("Analyst"))

    listing = client.get(reverse("admin:crm_contact_changelist")).content.decode()
    page = client.get(reverse("admin:crm_contact_change", args=[contact.pk])).content.decode()

    for html in (listing, page):
        assert "secret@example.com" not in html
        assert "Verborgen" not in html
    assert "s•••@•••" in listing


def test_contact_changelist_shows_pii_to_sales(client, user_with_role):
    factories.ContactFactory(email="seen@example.com")
    client.force_login(user_with_role("Sales"))

    listing = client.get(reverse("admin:crm_contact_changelist")).content.decode()

    assert "seen@example.com" in listing


def test_deal_list_masks_contact_name_for_analyst(client, user_with_role):
    factories.DealFactory(contact=factories.ContactFactory(last_name="Verborgen"))
    client.force_login(user_with_role("Analyst"))

    listing = client.get(reverse("admin:crm_deal_changelist")).content.decode()

    assert "Verborgen" not in listing


def test_company_contacts_inline_masks_names_for_analyst(client, user_with_role):
    contact = factories.ContactFactory(last_name="Verborgen")
    client.force_login(user_with_role("Analyst"))

    page = client.get(reverse("admin:crm_company_change", args=[contact.company_id]))

    assert page.status_code == 200
    assert "Verborgen" not in page.content.decode()


def test_deal_changelist_shows_totals_per_stage(admin_client):
    proposal = factories.StageFactory(name="Proposal", probability=50)
    factories.DealFactory(stage=proposal, amount=Decimal("100"), probability=50)
    factories.DealFactory(stage=proposal, amount=Decimal("300"), probability=50)
    factories.DealFactory(amount=Decimal("999"))

    response = admin_client.get(
        reverse("admin:crm_deal_changelist"), {"stage__id__exact": proposal.pk}
    )

    totals = response.context["stage_totals"]
    assert [(t["stage__name"], t["count"], t["total"], t["weighted"]) for t in totals] == [
        ("Proposal", 2, Decimal("400.00"), Decimal("200.00"))
    ]
    assert "Deals per stage" in response.content.decode()


def test_contact_admin_add_normalises_and_links_profile(admin_client):
    response = admin_client.post(
        reverse("admin:crm_contact_add"),
        {
            "first_name": "Eva",
            "email": " EVA@Example.com",
            "phone": "+31 6 1234 5678",
            "lifecycle_stage": "lead",
        },
    )

    assert response.status_code == 302, response.context["adminform"].errors
    contact = Contact.objects.get()
    assert (contact.email, contact.phone) == ("eva@example.com", "+31612345678")
    assert contact.profile.traits["firstName"] == "Eva"


def test_contact_admin_bad_phone_is_shown_on_the_field(admin_client):
    response = admin_client.post(
        reverse("admin:crm_contact_add"),
        {"first_name": "Eva", "phone": "12", "lifecycle_stage": "lead"},
    )

    assert response.status_code == 200
    assert "phone" in response.context["adminform"].form.errors
    assert not Contact.objects.exists()


def test_assign_owner_action(admin_client, superuser):
    contacts = factories.ContactFactory.create_batch(3)

    admin_client.post(
        reverse("admin:crm_contact_changelist"),
        {
            "action": "assign_owner",
            "_selected_action": [c.pk for c in contacts[:2]],
            "owner": superuser.pk,
        },
    )

    owners = dict(Contact.objects.values_list("pk", "owner_id"))
    assert [owners[c.pk] for c in contacts] == [superuser.pk, superuser.pk, None]


def test_add_tag_action(admin_client):
    contacts = factories.ContactFactory.create_batch(2)

    admin_client.post(
        reverse("admin:crm_contact_changelist"),
        {"action": "add_tag", "_selected_action": [contacts[0].pk], "tag": "  webinar  2026 "},
    )

    assert [t.name for t in contacts[0].tags.all()] == ["webinar 2026"]
    assert not contacts[1].tags.exists()


def test_action_without_value_tells_what_is_missing(admin_client):
    contact = factories.ContactFactory()

    response = admin_client.post(
        reverse("admin:crm_contact_changelist"),
        {"action": "assign_owner", "_selected_action": [contact.pk]},
        follow=True,
    )

    assert "Choose a owner" in response.content.decode() or "Choose" in response.content.decode()
    contact.refresh_from_db()
    assert contact.owner_id is None


def test_change_stage_action_wins_deals(admin_client):
    deal = factories.DealFactory()
    won = factories.StageFactory(pipeline=deal.pipeline, is_won=True)

    admin_client.post(
        reverse("admin:crm_deal_changelist"),
        {"action": "change_stage", "_selected_action": [deal.pk], "stage": won.pk},
    )

    deal.refresh_from_db()
    assert (deal.stage_id, deal.status, deal.probability) == (won.pk, Deal.Status.WON, 100)


def test_change_lifecycle_action_updates_profile_traits(admin_client):
    contact = factories.ContactFactory()
    admin_client.post(
        reverse("admin:crm_contact_changelist"),
        {"action": "change_lifecycle", "_selected_action": [contact.pk], "lifecycle_stage": "sql"},
    )

    contact.refresh_from_db()
    assert contact.lifecycle_stage == "sql"
    assert contact.profile.traits["lifecycleStage"] == "sql"


def test_profile_page_shows_its_contacts(admin_client):
    from crm.services import contact_create

    contact = contact_create(first_name="Eva", last_name="Profiel", email="eva@example.com")

    page = admin_client.get(reverse("admin:profiles_profile_change", args=[contact.profile_id]))

    assert "<h2>CRM</h2>" in page.content.decode()
    assert "Eva Profiel" in page.content.decode()


def test_profile_page_masks_contacts_for_analyst(client, user_with_role):
    from crm.services import contact_create

    contact = contact_create(first_name="Eva", last_name="Profiel", email="eva@example.com")
    client.force_login(user_with_role("Analyst"))

    page = client.get(reverse("admin:profiles_profile_change", args=[contact.profile_id]))

    assert page.status_code == 200
    assert "<h2>CRM</h2>" in page.content.decode()
    assert "Profiel" not in page.content.decode()


def test_profile_page_has_no_crm_panel_without_the_crm_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    from crm.services import contact_create

    contact = contact_create(first_name="Eva", last_name="Profiel", email="eva@example.com")
    user = django_user_model.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_profile"))
    client.force_login(user)

    page = client.get(reverse("admin:profiles_profile_change", args=[contact.profile_id]))

    assert page.status_code == 200
    assert "<h2>CRM</h2>" not in page.content.decode()


@pytest.mark.parametrize("model", ["contact", "company", "deal", "activity", "ticket", "task"])
def test_owner_is_picked_by_name_me_first_and_me_by_default(model, client, user_with_role):
    from django.contrib.auth import get_user_model

    rep = user_with_role("Sales", "rep")
    rep.first_name, rep.last_name = "Rita", "Rep"
    rep.save()
    user_with_role("Sales", "colleague")
    get_user_model().objects.create_user("customer-login", is_staff=False)
    client.force_login(rep)

    form = client.get(reverse(f"admin:crm_{model}_add")).context["adminform"].form
    owner = form.fields["owner"]

    labels = [label for value, label in owner.choices if value]
    assert labels[0] == "me (Rita Rep)" and "colleague" in labels
    assert "customer-login" not in labels  # only the people who use the admin
    assert form.initial["owner"] == rep.pk


def test_done_filters_speak_of_done_and_open_not_empty(admin_client):
    from django.utils import timezone

    open_task = factories.TaskFactory(title="Call back")
    factories.TaskFactory(title="Sent the quote", done_at=timezone.now())
    url = reverse("admin:crm_task_changelist")

    page = admin_client.get(url)
    opened = admin_client.get(url, {"done_at": "no"})

    filters = page.content.decode()
    assert "By done?" in filters and ">open</a>" in filters and "Not empty" not in filters
    assert list(opened.context["cl"].queryset) == [open_task]
