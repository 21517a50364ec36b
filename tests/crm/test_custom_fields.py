"""Custom fields of contacts, companies and deals: defined in the admin or the API, checked by
one service on every path (admin form, API), filterable, usable in rules; a definition with
values behind it is never changed or deleted silently."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from crm.customfields import (
    CustomFieldInUse,
    CustomValuesInvalid,
    custom_field_delete,
    custom_field_save,
    custom_field_values_remove,
    custom_values_clean,
)
from crm.models import Company, Contact, CustomField, Deal
from profiles.segments.rules import rule_errors, rule_queryset
from tests import factories

pytestmark = pytest.mark.django_db


def define(model="contact", key="plan", type="choice", **fields) -> CustomField:
    fields.setdefault("label", key.replace("_", " ").title())
    if type in ("choice", "multi_choice"):
        fields.setdefault("choices", ["Free", "Pro", "Enterprise"])
    return custom_field_save(field=CustomField(model=model, key=key, type=type, **fields))


# --- Values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type", "given", "kept"),
    [
        ("text", "  Blue ", "Blue"),
        ("number", "42", 42),
        ("number", 7, 7),
        ("decimal", "12,50", 12.5),
        ("decimal", "3", 3),
        ("date", "2027-03-01", "2027-03-01"),
        ("date", date(2027, 3, 1), "2027-03-01"),
        ("yes_no", "Ja", True),
        ("yes_no", False, False),
        ("choice", "pro", "Pro"),
        ("multi_choice", "enterprise; free", ["Free", "Enterprise"]),
        ("multi_choice", ["Pro"], ["Pro"]),
    ],
)
def test_each_type_keeps_its_value_in_one_form(type, given, kept):
    field = define(key="f", type=type)

    assert custom_values_clean("contact", {"f": given}, fields=[field]) == {"f": kept}


@pytest.mark.parametrize(
    ("type", "given", "message"),
    [
        ("number", "4.5", "expects a whole number"),
        ("number", True, "expects a whole number"),
        ("decimal", "lots", "expects a decimal number"),
        ("date", "31-02-2027", "expects a date as YYYY-MM-DD"),
        ("yes_no", "maybe", "expects yes or no"),
        ("choice", "Gold", "'Gold' is not one of: Free, Pro, Enterprise"),
        ("multi_choice", ["Pro", "Gold"], "'Gold' is not one of"),
        ("text", {"nested": 1}, "expects text"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(type, given, message):
    field = define(key="f", type=type, label="Field")

    with pytest.raises(CustomValuesInvalid) as refused:
        custom_values_clean("contact", {"f": given}, fields=[field])

    assert message in refused.value.errors["f"]
    assert refused.value.errors["f"].startswith("Field ")


def test_unknown_keys_and_missing_required_values_are_refused():
    define(key="plan")
    define(key="region", type="text", required=True)

    with pytest.raises(CustomValuesInvalid) as refused:
        custom_values_clean("contact", {"colour": "red", "plan": "Pro"})

    assert (
        "not a custom field of this record (its fields: plan, region)"
        in (refused.value.errors["colour"])
    )
    assert refused.value.errors["region"] == "Region is required"


def test_a_write_merges_and_null_clears():
    define(key="plan")
    define(key="seats", type="number")
    current = {"plan": "Pro", "seats": 5}

    assert custom_values_clean("contact", {"seats": None}, current=current) == {"plan": "Pro"}
    assert custom_values_clean("contact", {"seats": 6}, current=current) == {
        "plan": "Pro",
        "seats": 6,
    }


# --- The API ------------------------------------------------------------------------------------


@pytest.fixture
def crm_api(api_client_with_scopes):
    return api_client_with_scopes("crm:read", "crm:write", "pii:read")


def test_api_writes_reads_and_merges_custom_fields(crm_api):
    define(key="plan")
    define(key="renewal", type="date")

    created = crm_api.post(
        "/api/crm/contacts/",
        {"first_name": "Ann", "custom_fields": {"plan": "pro", "renewal": "2027-01-31"}},
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"/api/crm/contacts/{created.json()['id']}/"
    patched = crm_api.patch(url, {"custom_fields": {"plan": None}}, format="json")

    assert created.json()["custom_fields"] == {"plan": "Pro", "renewal": "2027-01-31"}
    assert patched.json()["custom_fields"] == {"renewal": "2027-01-31"}


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/api/crm/companies/", {"name": "Acme"}),
        ("/api/crm/deals/", {"name": "Big one"}),
    ],
)
def test_api_refuses_a_wrong_value_and_a_missing_required_one(crm_api, endpoint, body):
    model = "company" if "companies" in endpoint else "deal"
    if model == "deal":
        body = {**body, "stage": factories.StageFactory().pk}
    define(model=model, key="seats", type="number")
    define(model=model, key="tier", type="text")
    CustomField.objects.filter(key="tier").update(required=True)  # no records yet either way

    wrong = crm_api.post(endpoint, {**body, "custom_fields": {"seats": "many"}}, format="json")
    missing = crm_api.post(endpoint, body, format="json")

    assert wrong.status_code == 400
    assert "Seats expects a whole number" in str(wrong.json()["errors"]["custom_fields"])
    assert missing.status_code == 400
    assert "Tier is required" in str(missing.json()["errors"]["custom_fields"])
    assert not Company.objects.exists() and not Deal.objects.exists()


def test_a_caller_without_personal_data_sees_contact_values_masked_and_cannot_change_them(
    api_client_with_scopes,
):
    define(key="plan")
    contact = factories.ContactFactory(custom_fields={"plan": "Enterprise"})
    client = api_client_with_scopes("crm:read", "crm:write")
    url = f"/api/crm/contacts/{contact.pk}/"

    shown = client.get(url).json()["custom_fields"]
    changed = client.patch(url, {"custom_fields": {"plan": "Free"}}, format="json")

    assert shown["plan"] != "Enterprise" and shown["plan"].startswith("E")
    assert changed.status_code == 400
    contact.refresh_from_db()
    assert contact.custom_fields == {"plan": "Enterprise"}


# --- The admin ----------------------------------------------------------------------------------


def test_the_admin_form_shows_checks_and_saves_custom_fields(admin_client):
    define(model="company", key="seats", type="number")
    define(model="company", key="plan")
    company = factories.CompanyFactory(name="Acme")
    url = reverse("admin:crm_company_change", args=[company.pk])
    form = {"name": "Acme", "custom__seats": "12", "custom__plan": "Pro"}

    page = admin_client.get(url)
    form.update(management_forms(page))
    bad = admin_client.post(url, {**form, "custom__plan": "Gold"})
    good = admin_client.post(url, form)

    assert "Custom fields" in page.content.decode()
    assert bad.status_code == 200 and "custom__plan" in bad.context["adminform"].form.errors
    assert good.status_code == 302, good.context["adminform"].form.errors
    company.refresh_from_db()
    assert company.custom_fields == {"seats": 12, "plan": "Pro"}


def management_forms(page) -> dict:
    """The inline formsets' management fields, as the page's form posts them."""
    data = {}
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(k): v for k, v in management.initial.items()})
    return data


def test_lists_filter_on_a_choice_field(admin_client):
    define(model="deal", key="source", choices=["Partner", "Web"])
    partner = factories.DealFactory(name="Via partner", custom_fields={"source": "Partner"})
    factories.DealFactory(name="From the web", custom_fields={"source": "Web"})
    factories.DealFactory(name="Unknown")

    chosen = admin_client.get(reverse("admin:crm_deal_changelist"), {"custom__source": "Partner"})
    empty = admin_client.get(reverse("admin:crm_deal_changelist"), {"custom__source": "-"})

    assert list(chosen.context["cl"].queryset) == [partner]
    assert [deal.name for deal in empty.context["cl"].queryset] == ["Unknown"]


# --- Definitions with data behind them ----------------------------------------------------------


def test_a_definition_in_use_keeps_its_key_and_type_and_the_choices_in_use():
    field = define(key="plan")
    factories.ContactFactory(custom_fields={"plan": "Pro"})

    field.type = CustomField.Type.TEXT
    with pytest.raises(ValidationError, match="1 record"):
        custom_field_save(field=field)
    field.refresh_from_db()
    field.choices = ["Free", "Enterprise"]
    with pytest.raises(ValidationError, match="1 record.* use Pro"):
        custom_field_save(field=field)
    field.refresh_from_db()
    field.choices = [*field.choices, "Team"]  # adding a choice is fine
    custom_field_save(field=field)


def test_required_needs_every_record_to_have_a_value_first():
    field = define(key="region", type="text")
    contact = factories.ContactFactory()

    field.required = True
    with pytest.raises(ValidationError, match="1 record"):
        custom_field_save(field=field)
    Contact.objects.filter(pk=contact.pk).update(custom_fields={"region": "North"})
    custom_field_save(field=field)


def test_deleting_a_definition_with_values_is_refused_until_they_are_removed(admin_client):
    field = define(key="plan")
    factories.ContactFactory(custom_fields={"plan": "Pro", "other": 1})

    with pytest.raises(CustomFieldInUse, match="1 record"):
        custom_field_delete(field=field)
    page = admin_client.post(
        reverse("admin:crm_customfield_delete", args=[field.pk]), {"post": "yes"}, follow=True
    )
    assert "remove the values first" in page.content.decode()
    assert custom_field_values_remove(field=field) == 1
    custom_field_delete(field=field)

    assert Contact.objects.get().custom_fields == {"other": 1}
    assert not CustomField.objects.exists()


def test_api_definitions_refuse_like_the_admin(crm_api):
    created = crm_api.post(
        "/api/crm/custom-fields/",
        {"model": "deal", "label": "Seats", "key": "seats", "type": "number"},
        format="json",
    )
    no_choices = crm_api.post(
        "/api/crm/custom-fields/",
        {"model": "deal", "label": "Source", "key": "source", "type": "choice"},
        format="json",
    )
    factories.DealFactory(custom_fields={"seats": 3})
    url = f"/api/crm/custom-fields/{created.json()['id']}/"
    retyped = crm_api.patch(url, {"type": "text"}, format="json")
    deleted = crm_api.delete(url)

    assert created.status_code == 201, created.content
    assert no_choices.status_code == 400 and "choices" in no_choices.json()["errors"]
    assert retyped.status_code == 400 and "1 record" in str(retyped.json())
    assert deleted.status_code == 409
    assert CustomField.objects.count() == 1


# --- Rules --------------------------------------------------------------------------------------


def test_segments_use_contact_custom_fields_by_type():
    define(key="plan")
    define(key="seats", type="number")
    big = factories.ContactFactory(
        profile=factories.ProfileFactory(), custom_fields={"plan": "Pro", "seats": 40}
    )
    factories.ContactFactory(
        profile=factories.ProfileFactory(), custom_fields={"plan": "Pro", "seats": 3}
    )
    rule = {
        "all": [
            {"crm": "custom.plan", "value": "Pro"},
            {"crm": "custom.seats", "op": "gt", "value": 10},
        ]
    }

    assert rule_errors(rule) == []
    assert list(rule_queryset(rule).values_list("pk", flat=True)) == [big.profile_id]
    assert rule_errors({"crm": "custom.colour", "value": "red"}) == [
        "crm: no contact custom field 'colour' (contact custom fields: custom.plan, custom.seats)"
    ]
    assert rule_errors({"crm": "custom.plan", "value": "Pro"}, pii_allowed=False) != []


# --- Imports ------------------------------------------------------------------------------------


def test_an_import_fills_custom_fields_by_label_or_key_and_revert_restores_them():
    from crm.imports.revert import import_job_revert
    from tests.crm.test_imports import csv_bytes, imported

    define(key="plan")
    define(key="seats", type="number", label="Number of seats")
    existing = factories.ContactFactory(
        email="ann@example.com", custom_fields={"plan": "Free", "seats": 2}
    )
    data = csv_bytes(
        "email,first_name,Plan,Number of seats",
        "ann@example.com,Ann,enterprise,",
        "bob@example.com,Bob,Pro,12",
    )

    job = imported(data)

    assert (job.created_count, job.updated_count, job.error_count) == (1, 1, 0), job.errors
    existing.refresh_from_db()
    assert existing.custom_fields == {"plan": "Enterprise", "seats": 2}  # blank cell: kept
    assert Contact.objects.get(email="bob@example.com").custom_fields == {
        "plan": "Pro",
        "seats": 12,
    }
    import_job_revert(job=job)
    existing.refresh_from_db()
    assert existing.custom_fields == {"plan": "Free", "seats": 2}


def test_an_import_refuses_a_wrong_value_and_a_missing_required_one_by_row():
    from tests.crm.test_imports import checked, csv_bytes

    define(model="company", key="seats", type="number")
    define(model="company", key="tier", type="text")
    CustomField.objects.filter(key="tier").update(required=True)
    data = csv_bytes("name,seats,tier", "Acme,lots,Gold", "Beta,3,", "Gamma,4,Silver")

    job = checked(data, resource="companies", key="name")

    assert [(e["row"], e["column"], e["message"]) for e in job.errors] == [
        (2, "B (seats)", "Seats expects a whole number, not 'lots'"),
        (3, "C (tier)", "Tier is required"),
    ]
    assert job.created_count == 1


def test_exports_have_a_column_per_custom_field_that_imports_back(admin_client, user_with_role):
    from tests.crm.test_admin_imports import export
    from tests.crm.test_imports import imported

    define(model="company", key="regions", type="multi_choice", choices=["North", "South"])
    define(model="company", key="partner", type="yes_no")
    factories.CompanyFactory(
        name="Acme", custom_fields={"regions": ["North", "South"], "partner": True}
    )
    define(key="plan")
    factories.ContactFactory(custom_fields={"plan": "Pro"})

    body = export(admin_client, "company").content.decode("utf-8-sig")
    header, row = body.splitlines()[:2]
    assert header.endswith(",custom.partner,custom.regions")  # in the fields' order
    assert row.endswith(',yes,"North, South"')
    Company.objects.update(custom_fields={})
    job = imported(body.encode(), resource="companies", key="id", skip_unknown=True)
    acme = Company.objects.get(name="Acme")
    assert acme.custom_fields == {"regions": ["North", "South"], "partner": True}
    assert job.error_count == 0

    client = admin_client
    client.force_login(user_with_role("Analyst"))
    assert "custom.plan" not in export(client, "contact").content.decode()


def companies_import(data: bytes, created_by, overrides: dict | None = None):
    """An import of companies keyed by name, with a column mapping."""
    from crm.imports.jobs import import_job_create

    return import_job_create(
        resource="companies",
        mode="upsert",
        key_field="name",
        file_name="c.csv",
        data=data,
        overrides=overrides,
        created_by=created_by,
    )


def test_a_column_maps_to_a_new_custom_field_created_from_the_mapping(user_with_role):
    from crm.imports.jobs import import_job_validate
    from tests.crm.test_imports import csv_bytes

    data = csv_bytes("name,Seats,Renewal date", "Acme,12,2027-01-31")
    manager = user_with_role("Sales manager", "manager")
    mapping = {"Seats": "new:number", "Renewal date": "new:date"}
    job = import_job_validate(job=companies_import(data, manager, overrides=mapping))

    assert job.status == "validated", job.errors
    assert sorted(CustomField.objects.values_list("key", "type", "label")) == [
        ("renewal_date", "date", "Renewal date"),
        ("seats", "number", "Seats"),
    ]


@pytest.mark.parametrize(
    ("role", "mapping", "message"),
    [
        ("Sales", {"Seats": "new:number"}, "needs the permission to add them"),
        ("Sales manager", {"Seats": "new:choice"}, "define a choice field under Custom fields"),
    ],
)
def test_creating_a_custom_field_from_a_mapping_is_refused_with_the_reason(
    user_with_role, role, mapping, message
):
    from crm.importfiles import ImportRefused
    from tests.crm.test_imports import csv_bytes

    data, someone = csv_bytes("name,Seats", "Acme,12"), user_with_role(role, "someone")
    with pytest.raises(ImportRefused, match=message):
        companies_import(data, someone, overrides=mapping)
    assert not CustomField.objects.exists()


def test_the_preview_remaps_a_column_to_a_new_custom_field(
    client, user_with_role, django_capture_on_commit_callbacks
):
    from crm.imports.jobs import import_job_validate
    from crm.models import ImportJob
    from tests.crm.test_imports import csv_bytes

    manager = user_with_role("Sales manager", "manager")
    job = companies_import(csv_bytes("name,Seats", "Acme,12"), manager)
    assert import_job_validate(job=job).status == ImportJob.Status.INVALID  # Seats: no field
    client.force_login(manager)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:crm_importjob_remap", args=[job.pk]),
            {"column_map": "Seats=new:number"},
        )

    job.refresh_from_db()
    assert job.status == ImportJob.Status.VALIDATED, job.errors
    assert job.column_map["columns"]["Seats"] == "custom.seats"


def test_a_field_s_page_says_how_many_records_have_a_value(admin_client):
    field = define(key="plan")
    factories.ContactFactory(custom_fields={"plan": "Pro"})

    page = admin_client.get(reverse("admin:crm_customfield_change", args=[field.pk]))
    listing = admin_client.get(reverse("admin:crm_customfield_changelist"))

    assert "Records with a value" in page.content.decode()
    assert page.context["adminform"].form.instance == field
    assert "records_with_a_value" not in listing.context["cl"].list_display  # a scan per row
