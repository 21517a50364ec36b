"""Saved views: a named filter, search, ordering and choice of columns per list, private or
shared, on every list of the admin."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from cdphub.admin_mixins import SavedViewsMixin, column_key
from cdphub.audit import audit_entries_for
from cdphub.models import SavedView
from cdphub.roles import grants
from cdphub.saved_views import view_query
from tests.factories import CompanyFactory, ContactFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

CONTACTS = reverse("admin:crm_contact_changelist")
SAVE = reverse("admin:crm_contact_saveview")


def save(client, **fields):
    data = {"query": "", "name": "Leads", "columns": ["id", "email"], **fields}
    return client.post(SAVE, data)


def shown_columns(response) -> list[str]:
    return [column_key(c) for c in response.context["cl"].list_display if c != "action_checkbox"]


def test_a_saved_view_keeps_filters_search_ordering_and_columns(admin_client, superuser):
    ContactFactory(first_name="Ann", lifecycle_stage="lead")
    ContactFactory(first_name="Ann", lifecycle_stage="customer")
    ContactFactory(first_name="Bob", lifecycle_stage="lead")

    response = save(
        admin_client,
        query="lifecycle_stage__exact=lead&q=Ann&o=2&p=3&_view=99",
        columns=["email", "id"],
    )

    view = SavedView.objects.get()
    assert (view.owner, view.list_label, view.name) == (superuser, "crm.contact", "Leads")
    assert view.query == "lifecycle_stage__exact=lead&q=Ann&o=2"  # not the page, not a view
    assert view.columns == ["email", "id"]
    assert response.status_code == 302
    assert response.url == f"{CONTACTS}?{view.query}&_view={view.pk}"

    page = admin_client.get(response.url)
    assert page.status_code == 200
    assert shown_columns(page) == ["email", "id"]
    assert [c.first_name for c in page.context["cl"].result_list] == ["Ann"]
    assert page.context["cl"].result_count == 1
    # Links the list makes (sorting, paging, filters) stay in the view.
    assert f"_view={view.pk}" in page.context["cl"].get_query_string({"o": "1"})
    assert "_view" not in page.context["cl"].get_filters_params()
    assert [e.action for e in audit_entries_for(view)] == ["saved_view.create"]


def test_the_view_bar_lists_views_and_marks_the_current_one(admin_client):
    save(admin_client, name="Leads")
    view = SavedView.objects.get()

    page = admin_client.get(f"{CONTACTS}?_view={view.pk}").content.decode()

    assert 'aria-label="Saved views"' in page
    assert f'href="{CONTACTS}?_view={view.pk}" aria-current="page">Leads</a>' in page
    assert "Delete “Leads”" in page
    assert admin_client.get(CONTACTS).context["saved_views"]["current"] is None
    # Not in the pop-up list that picks a related record.
    popup = admin_client.get(f"{CONTACTS}?_popup=1&_to_field=id")
    assert (
        "saved_views" not in popup.context
        and 'aria-label="Saved views"' not in popup.content.decode()
    )


def test_a_private_view_is_its_owners_and_a_shared_one_everyones(client, user_with_role):
    owner, colleague = user_with_role("Sales", "owner"), user_with_role("Sales", "colleague")
    client.force_login(owner)
    save(client, name="Mine")
    save(client, name="Ours", shared="on")
    mine, ours = SavedView.objects.get(name="Mine"), SavedView.objects.get(name="Ours")

    client.force_login(colleague)
    listed = [view for view, _ in client.get(CONTACTS).context["saved_views"]["views"]]
    assert listed == [ours]
    # Someone else's private view, asked for by id, is not applied.
    page = client.get(f"{CONTACTS}?_view={mine.pk}")
    assert page.context["saved_views"]["current"] is None
    assert shown_columns(page) == shown_columns(client.get(CONTACTS))
    assert client.get(f"{CONTACTS}?_view={ours.pk}").context["saved_views"]["current"] == ours
    # Only the owner deletes it.
    client.post(reverse("admin:crm_contact_deleteview", args=[ours.pk]))
    assert SavedView.objects.filter(pk=ours.pk).exists()

    client.force_login(owner)
    client.post(reverse("admin:crm_contact_deleteview", args=[ours.pk]))
    assert not SavedView.objects.filter(pk=ours.pk).exists()


def test_saving_again_under_the_same_name_replaces_the_view(admin_client):
    save(admin_client, name="Leads", columns=["id"])
    save(admin_client, name=" Leads ", columns=["id", "company"], shared="on")

    view = SavedView.objects.get()
    assert (view.columns, view.shared) == (["id", "company"], True)


def test_all_columns_in_their_order_are_saved_as_the_lists_own(admin_client):
    columns = [column_key(c) for c in admin.site._registry[ContactFactory._meta.model].list_display]

    save(admin_client, columns=columns)

    assert SavedView.objects.get().columns == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "  "}, "Give the view a name."),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"columns": []}, "Choose at least one column."),
        ({"columns": ["id", "password"]}, "This list has no column password."),
        ({"query": "q=" + "a" * 2100}, "The filters are too long to save"),
    ],
)
def test_a_bad_view_is_refused_with_what_is_wrong_and_nothing_saved(admin_client, fields, message):
    response = save(admin_client, **fields)

    assert not SavedView.objects.exists()
    assert response.status_code == 302
    shown = [str(m) for m in admin_client.get(response.url).context["messages"]]
    assert any(message in text and text.startswith("The view was not saved") for text in shown)


def test_saving_and_deleting_need_the_list_and_a_post(client, admin_client, superuser):
    assert admin_client.get(SAVE).status_code == 405
    view = SavedView.objects.create(owner=superuser, list_label="crm.contact", name="Shared")
    view.shared = True
    view.save()
    client.force_login(StaffUserFactory())  # staff, but may not open the contacts

    assert save(client).status_code == 403
    assert client.post(reverse("admin:crm_contact_deleteview", args=[view.pk])).status_code == 403
    assert list(SavedView.objects.all()) == [view]


def test_a_view_of_personal_columns_stays_masked_for_roles_without_personal_data(
    client, user_with_role
):
    ContactFactory(email="ann.visible@example.com", company=CompanyFactory())
    sales, analyst = user_with_role("Sales"), user_with_role("Analyst")
    assert grants("Analyst", "crm", "contact", "view")
    client.force_login(sales)
    save(client, columns=["id", "email"], shared="on")
    view = SavedView.objects.get()

    client.force_login(analyst)
    page = client.get(f"{CONTACTS}?_view={view.pk}")

    assert shown_columns(page) == ["id", "email_masked"]
    assert "ann.visible@example.com" not in page.content.decode()


def test_a_column_the_list_no_longer_has_is_left_out(admin_client, superuser):
    view = SavedView.objects.create(
        owner=superuser, list_label="crm.contact", name="Old", columns=["gone", "email"]
    )
    page = admin_client.get(f"{CONTACTS}?_view={view.pk}")

    assert shown_columns(page) == ["email"]
    # The only link column (id) is not shown: the first column links instead.
    assert page.context["cl"].list_display_links == ["email"]


def test_view_query_keeps_only_what_a_view_is():
    assert view_query("a=1&p=2&e=1&_popup=1&_to_field=id&_view=3&o=-1") == "a=1&o=-1"


def test_every_list_offers_saved_views(admin_client, superuser):
    """Each registered list takes a saved view choosing its last column alone, and shows it."""
    missing = []
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, SavedViewsMixin):
            missing.append(model._meta.label_lower)
            continue
        info = model._meta.app_label, model._meta.model_name
        changelist = reverse("admin:{}_{}_changelist".format(*info))
        request = admin_client.get(changelist).wsgi_request
        columns = [column_key(c) for c in model_admin.list_columns(request)]
        view = SavedView.objects.create(
            owner=superuser, list_label=model._meta.label_lower, name="t", columns=columns[-1:]
        )
        page = admin_client.get(f"{changelist}?_view={view.pk}")
        assert page.status_code == 200, model._meta.label_lower
        assert shown_columns(page) == columns[-1:], model._meta.label_lower
        assert page.context["saved_views"]["current"] == view
    assert missing == []
