import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm.models import Contact, DataExport, ImportJob
from tests import factories
from tests.crm.test_imports import csv_bytes, imported

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, **fields):
    return client.post(
        reverse("admin:crm_importjob_add"),
        {
            "resource": "contacts",
            "mode": "upsert",
            "key_field": "email",
            "file": SimpleUploadedFile("people.csv", data, content_type="text/csv"),
            **fields,
        },
    )


def test_upload_checks_then_apply_and_revert(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_client, csv_bytes("Voornaam,E-mail", "Anna,anna@example.com"))
    job = ImportJob.objects.get()
    assert response.url == reverse("admin:crm_importjob_change", args=[job.pk])
    assert job.status == "validated"

    page = admin_client.get(response.url).content.decode()
    assert "all or nothing" in page
    assert "Voornaam" in page and "first_name" in page
    assert "Apply the import (1 new, 0 updated)" in page
    assert not Contact.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:crm_importjob_apply", args=[job.pk]))
    assert Contact.objects.get().first_name == "Anna"

    admin_client.post(reverse("admin:crm_importjob_revert", args=[job.pk]))
    assert not Contact.objects.exists()
    assert ImportJob.objects.get().status == "reverted"


def test_upload_of_a_non_spreadsheet_is_refused_on_the_form(admin_client):
    response = upload(admin_client, b"\x89PNG\r\n\x1a\n\x00\x00binary")

    assert response.status_code == 200
    assert "is not a spreadsheet" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_upload_with_wrong_key_for_resource(admin_client):
    response = upload(
        admin_client, csv_bytes("domain", "a.example"), resource="deals", key_field="domain"
    )

    assert "deals can be keyed on name, id" in response.content.decode()


def test_remap_and_errors_csv(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        upload(admin_client, csv_bytes("Correo,Shoe", "bad-address,42"))
    job = ImportJob.objects.get()
    assert job.status == "invalid"
    assert "Column A ('Correo') is not a contacts field" in job.message

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:crm_importjob_remap", args=[job.pk]),
            {"column_map": "Correo=email\nShoe=-"},
        )
    job.refresh_from_db()
    csv_text = admin_client.get(
        reverse("admin:crm_importjob_errors", args=[job.pk])
    ).content.decode("utf-8-sig")

    assert job.column_map["columns"] == {"Correo": "email", "Shoe": "-"}
    assert csv_text.splitlines() == [
        "row,column,value,message",
        "2,A (Correo),bad-address,e-mail 'bad-address' is not a valid address",
    ]


def test_job_list_and_page_mask_pii_for_analyst(client, user_with_role):
    factories.ContactFactory(email="known@example.com", job_title="Intern")
    job = imported(csv_bytes("email,job title", "known@example.com,CEO"))
    client.force_login(user_with_role("Analyst"))

    listing = client.get(reverse("admin:crm_importjob_changelist"))
    page = client.get(reverse("admin:crm_importjob_change", args=[job.pk])).content.decode()

    assert listing.status_code == 200
    assert "CEO" in page  # not personal data
    assert "known@example.com" not in page
    assert "Revert" not in page  # view-only role


def test_analyst_cannot_upload(client, user_with_role):
    client.force_login(user_with_role("Analyst"))

    assert client.get(reverse("admin:crm_importjob_add")).status_code == 403


def test_import_job_changelist_queries_are_bounded(admin_client, django_assert_max_num_queries):
    for n in range(30):
        imported(csv_bytes("email", f"p{n}@example.com"))

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("admin:crm_importjob_changelist"))

    assert response.status_code == 200


def export(client, model: str, file_format: int = 0, query: str = ""):
    return client.post(reverse(f"admin:crm_{model}_export") + query, {"format": file_format})


def test_export_neutralises_formulas_and_is_logged(admin_client):
    factories.ContactFactory(first_name='=HYPERLINK("http://evil")', last_name="-2+3", city="@x")

    response = export(admin_client, "contact")

    body = response.content.decode()
    assert response.status_code == 200
    assert "'=HYPERLINK" in body and "'-2+3" in body and "'@x" in body
    log = DataExport.objects.get()
    assert (log.resource, log.row_count, log.included_pii) == ("contact", 1, True)


def test_export_respects_list_filters(admin_client):
    factories.ContactFactory(lifecycle_stage="customer", email="cust@example.com")
    factories.ContactFactory(lifecycle_stage="lead", email="lead@example.com")

    body = export(
        admin_client, "contact", query="?lifecycle_stage__exact=customer"
    ).content.decode()

    assert "cust@example.com" in body
    assert "lead@example.com" not in body


def test_export_without_pii_permission_leaves_personal_columns_out(client, user_with_role):
    factories.ContactFactory(email="secret@example.com", job_title="Buyer")
    client.force_login(user_with_role("Analyst"))

    body = export(client, "contact").content.decode()

    assert "Buyer" in body
    assert "secret@example.com" not in body
    assert "email" not in body.splitlines()[0]
    assert DataExport.objects.get().included_pii is False


@pytest.mark.parametrize("model", ["company", "deal", "activity"])
def test_other_exports(admin_client, model):
    {
        "company": factories.CompanyFactory,
        "deal": factories.DealFactory,
        "activity": factories.ActivityFactory,
    }[model]()

    response = export(admin_client, model, file_format=1)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
