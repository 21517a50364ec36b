from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import (
    ConsentRecord,
    ConsentState,
    DataSubjectRequest,
    ProcessingActivity,
    Suppression,
)
from consent.services import consent_record
from tests.factories import DataSubjectRequestFactory, ProcessingActivityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "datasubjectrequestaction",
    "processingrestriction",
    "purpose",
    "consentrecord",
    "consentstate",
    "datasubjectrequest",
    "suppression",
    "retentionpolicy",
    "processingactivity",
]


@pytest.fixture
def many_rows(purposes):
    """Enough rows of every consent model that an N+1 would show in the query count."""
    for index in range(20):
        profile = ProfileFactory()
        consent_record(
            profile=profile,
            purpose="email_marketing",
            status="granted",
            method="web_form",
            identifier_kind="email",
            identifier_value=f"person{index}@example.com",
        )
        DataSubjectRequestFactory(subject_email=f"person{index}@example.com", profile=profile)
        Suppression.objects.create(identifier_kind="email", value_hash=f"{index:064d}")
        ProcessingActivityFactory()


def test_changelists_run_a_bounded_number_of_queries(
    admin_client, many_rows, django_assert_max_num_queries
):
    # One fixture for every changelist: building many rows is the slow part of this test.
    for model in CHANGELISTS:
        with django_assert_max_num_queries(12):
            response = admin_client.get(f"/admin/consent/{model}/")
        assert response.status_code == 200, model
        assert admin_client.get(f"/admin/consent/{model}/?q=1").status_code == 200, model


def test_analyst_sees_consent_proof_masked(client, user_with_role, many_rows):
    client.force_login(user_with_role("Analyst"))
    page = client.get("/admin/consent/consentrecord/").content.decode()
    assert "person1@example.com" not in page
    assert "p•••" in page
    dsar_page = client.get("/admin/consent/datasubjectrequest/").content.decode()
    assert "person1@example.com" not in dsar_page


def test_privacy_officer_sees_consent_proof(client, user_with_role, many_rows):
    client.force_login(user_with_role("Privacy officer"))
    page = client.get("/admin/consent/consentrecord/").content.decode()
    assert "person1@example.com" in page


def test_analyst_cannot_add_records(client, user_with_role, purposes):
    client.force_login(user_with_role("Analyst"))
    assert client.get("/admin/consent/consentrecord/add/").status_code == 403


def test_overdue_requests_are_shown_in_red_and_filtered(admin_client):
    late = DataSubjectRequest.objects.create(
        kind="erasure", subject_email="late@example.org", due_at=timezone.now() - timedelta(days=2)
    )
    on_time = DataSubjectRequest.objects.create(kind="access", subject_email="ok@example.org")
    page = admin_client.get("/admin/consent/datasubjectrequest/?overdue=yes").content.decode()
    assert "(overdue)" in page and "color:#ba2121" in page
    assert f"/admin/consent/datasubjectrequest/{late.pk}/change/" in page
    assert f"/admin/consent/datasubjectrequest/{on_time.pk}/change/" not in page


def add_form_data(profile, **overrides):
    data = {
        "profile": profile.pk,
        "purpose": "",
        "status": "granted",
        "method": "web_form",
        "source": "signup form",
        "occurred_at_0": timezone.now().strftime("%Y-%m-%d"),
        "occurred_at_1": timezone.now().strftime("%H:%M:%S"),
        "identifier_kind": "",
        "identifier_value": "",
        "shown_text_version": "",
        "ip_address": "",
        "user_agent": "",
        "form_url": "",
        "tcf_string": "",
        "tcf_vendor_list_version": "",
    }
    data.update(overrides)
    return data


def test_admin_add_goes_through_the_service(admin_client, purposes):
    profile = ProfileFactory()
    response = admin_client.post(
        "/admin/consent/consentrecord/add/",
        add_form_data(profile, purpose=purposes["email_marketing"].pk),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    record = ConsentRecord.objects.get()
    assert record.recorded_by.username == "root"
    assert record.text_version.version == "1"
    assert ConsentState.objects.get(profile=profile).record == record


def test_admin_add_shows_the_service_error_on_its_field(admin_client, purposes):
    profile = ProfileFactory()
    response = admin_client.post(
        "/admin/consent/consentrecord/add/",
        add_form_data(profile, purpose=purposes["sms_marketing"].pk),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "phone" in errors["identifier_value"][0]
    assert not ConsentRecord.objects.exists()


def test_records_are_read_only_in_the_admin(admin_client, purposes):
    record = consent_record(
        profile=ProfileFactory(), purpose="analytics", status="granted", method="api"
    )
    change = admin_client.get(f"/admin/consent/consentrecord/{record.pk}/change/")
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert admin_client.post(f"/admin/consent/consentrecord/{record.pk}/delete/").status_code == 403
    assert ConsentRecord.objects.filter(pk=record.pk).exists()


def test_suppressions_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get("/admin/consent/suppression/add/").status_code == 403


def test_purpose_change_page_shows_text_inline(admin_client, purposes):
    page = admin_client.get(f"/admin/consent/purpose/{purposes['sms_marketing'].pk}/change/")
    assert "Reply STOP to stop" in page.content.decode()


def test_processing_register_exports_csv(admin_client, purposes):
    activity = ProcessingActivity.objects.create(
        name="Newsletter",
        lawful_basis="consent",
        data_subjects="Customers",
        data_categories="Contact data",
    )
    activity.purposes.add(purposes["email_marketing"])
    response = admin_client.post(
        "/admin/consent/processingactivity/",
        {"action": "export_csv", "_selected_action": [activity.pk]},
    )
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("name,description,controller,lawful_basis")
    assert lines[1].startswith("Newsletter,") and "email_marketing" in lines[1]


def test_dsar_add_and_run_from_the_admin(
    admin_client, purposes, settings, tmp_path, django_capture_on_commit_callbacks
):
    from tests.factories import IdentityFactory

    settings.MEDIA_ROOT = tmp_path
    IdentityFactory(kind="email", value="sanne@example.org")
    now = timezone.now()
    response = admin_client.post(
        "/admin/consent/datasubjectrequest/add/",
        {
            "kind": "access",
            "subject_email": "Sanne@Example.org",
            "subject_phone": "",
            "subject_user_id": "",
            "profile": "",
            "received_at_0": now.strftime("%Y-%m-%d"),
            "received_at_1": now.strftime("%H:%M:%S"),
            "details": "",
            "corrections": "{}",
            "actions-TOTAL_FORMS": "0",
            "actions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    request_ = DataSubjectRequest.objects.get()
    assert request_.subject_email == "sanne@example.org"
    assert request_.created_by.username == "root"
    for action in ("verify_requests", "process_requests"):
        with django_capture_on_commit_callbacks(execute=True):
            admin_client.post(
                "/admin/consent/datasubjectrequest/",
                {"action": action, "_selected_action": [request_.pk]},
            )
    request_.refresh_from_db()
    assert request_.status == "completed" and request_.result_file
    page = admin_client.get(f"/admin/consent/datasubjectrequest/{request_.pk}/change/")
    assert "Identity verified" in page.content.decode()


def test_dsar_admin_add_shows_service_errors(admin_client):
    now = timezone.now()
    response = admin_client.post(
        "/admin/consent/datasubjectrequest/add/",
        {
            "kind": "rectification",
            "subject_email": "a@example.org",
            "received_at_0": now.strftime("%Y-%m-%d"),
            "received_at_1": now.strftime("%H:%M:%S"),
            "corrections": "{}",
            "actions-TOTAL_FORMS": "0",
            "actions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "corrected values" in str(response.context["adminform"].form.errors)
    assert not DataSubjectRequest.objects.exists()


def test_process_action_refuses_unverified_requests(admin_client):
    request_ = DataSubjectRequest.objects.create(kind="access", subject_email="x@example.org")
    response = admin_client.post(
        "/admin/consent/datasubjectrequest/",
        {"action": "process_requests", "_selected_action": [request_.pk]},
        follow=True,
    )
    assert "verify it first" in response.content.decode()
    request_.refresh_from_db()
    assert request_.status == "received"


def test_the_suppression_list_is_searched_by_the_identifier_a_privacy_officer_types(
    client, user_with_role
):
    from consent.hashing import suppression_hash

    Suppression.objects.create(
        identifier_kind="email", value_hash=suppression_hash("email", "anna@example.com")
    )
    Suppression.objects.create(
        identifier_kind="phone", value_hash=suppression_hash("phone", "+31612345678")
    )
    client.force_login(user_with_role("Privacy officer"))
    url = "/admin/consent/suppression/"

    def found(term: str) -> list[str]:
        page = client.get(url, {"q": term})
        return list(page.context["cl"].result_list.values_list("identifier_kind", flat=True))

    assert found("  Anna@Example.COM ") == ["email"]  # normalised, then hashed
    assert found("06 12345678") == ["phone"]  # a national number, in the default region
    assert found(suppression_hash("email", "anna@example.com")) == ["email"]
    assert found("bob@example.com") == []


def test_a_completed_or_rejected_request_is_locked_as_evidence(admin_client):
    from django.urls import reverse

    done = DataSubjectRequestFactory(status=DataSubjectRequest.Status.COMPLETED)
    refused = DataSubjectRequestFactory(status=DataSubjectRequest.Status.REJECTED)
    open_one = DataSubjectRequestFactory()
    for locked in (done, refused):
        change = reverse("admin:consent_datasubjectrequest_change", args=[locked.pk])
        page = admin_client.get(change).content.decode()
        assert 'name="_save"' not in page  # shown read-only
        delete = reverse("admin:consent_datasubjectrequest_delete", args=[locked.pk])
        assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    admin_client.post(
        reverse("admin:consent_datasubjectrequest_changelist"),
        {"action": "delete_selected", "_selected_action": [done.pk], "post": "yes"},
    )
    assert DataSubjectRequest.objects.filter(pk__in=[done.pk, refused.pk]).count() == 2
    delete = reverse("admin:consent_datasubjectrequest_delete", args=[open_one.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
