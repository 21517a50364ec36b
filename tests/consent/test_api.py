from __future__ import annotations

import csv
import io

import pytest
from rest_framework.test import APIClient

from consent.models import ConsentRecord, ConsentState, DataSubjectRequest, ProcessingActivity
from consent.services import consent_record
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

LIST_URLS = [
    "/api/consent/purposes/",
    "/api/consent/records/",
    "/api/consent/states/",
    "/api/consent/requests/",
    "/api/consent/suppressions/",
    "/api/consent/retention-policies/",
    "/api/consent/processing-activities/",
]


@pytest.fixture
def reader(api_client_with_scopes):
    return api_client_with_scopes("consent:read")


@pytest.fixture
def writer(api_client_with_scopes):
    return api_client_with_scopes("consent:read", "consent:write", "pii:read")


@pytest.mark.parametrize("url", LIST_URLS)
def test_every_endpoint_answers_401_without_a_key(url, purposes):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("url", LIST_URLS)
def test_every_endpoint_answers_403_without_the_consent_scope(url, api_client_with_scopes):
    response = api_client_with_scopes("profiles:read").get(url)
    assert response.status_code == 403


@pytest.mark.parametrize("url", LIST_URLS)
def test_every_endpoint_lists_with_the_read_scope(url, reader, purposes):
    response = reader.get(url)
    assert response.status_code == 200
    assert "results" in response.json()


@pytest.mark.parametrize(
    "url",
    [
        "/api/consent/records/grant/",
        "/api/consent/records/withdraw/",
        "/api/consent/records/object/",
        "/api/consent/records/tcf/",
        "/api/consent/records/import/",
        "/api/consent/requests/",
    ],
)
def test_writes_need_the_write_scope(url, reader, purposes):
    assert reader.post(url, {}, format="json").status_code == 403


def test_purposes_are_seeded_with_texts(reader, purposes):
    data = reader.get("/api/consent/purposes/?code=sms_marketing").json()["results"]
    assert len(data) == 1
    sms = data[0]
    assert sms["is_marketing"] and sms["requires_express_written"]
    assert sms["lawful_basis"] == "consent"
    assert [text["version"] for text in sms["texts"]] == ["1"]
    codes = {p["code"] for p in reader.get("/api/consent/purposes/").json()["results"]}
    assert codes == {
        "email_marketing",
        "sms_marketing",
        "phone",
        "personalisation",
        "advertising",
        "analytics",
        "third_party_sharing",
    }


def test_grant_records_and_derives_state(writer, purposes):
    profile = ProfileFactory()
    response = writer.post(
        "/api/consent/records/grant/",
        {
            "profile": profile.pk,
            "purpose": "email_marketing",
            "method": "web_form",
            "ip_address": "192.0.2.1",
            "form_url": "https://shop.example.com/newsletter",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "granted"
    assert body["text_version"] == "1"
    assert body["ip_address"] == "192.0.2.1"
    state = ConsentState.objects.get(profile=profile, purpose__code="email_marketing")
    assert state.status == "granted" and state.record_id == body["id"]


def test_create_refuses_sms_without_a_phone_number_and_says_where(writer, purposes):
    profile = ProfileFactory()
    response = writer.post(
        "/api/consent/records/",
        {"profile": profile.pk, "purpose": "sms_marketing", "status": "granted", "method": "api"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "phone" in body["errors"]["identifier_value"][0]
    assert not ConsentRecord.objects.exists()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"purpose": "email_marketing", "status": "granted", "method": "api"}, "profile"),
        ({"purpose": "nope", "status": "granted", "method": "api"}, "purpose"),
        ({"purpose": "email_marketing", "status": "maybe", "method": "api"}, "status"),
        ({"purpose": "email_marketing", "status": "granted", "method": "fax"}, "method"),
        (
            {"purpose": "email_marketing", "status": "granted", "method": "api", "ip_address": "x"},
            "ip_address",
        ),
        (
            {
                "purpose": "email_marketing",
                "status": "granted",
                "method": "api",
                "text_version": "99",
            },
            "text_version",
        ),
    ],
)
def test_create_bad_input_names_the_field(writer, purposes, payload, field):
    profile = ProfileFactory()
    if field != "profile":
        payload = {"profile": profile.pk, **payload}
    response = writer.post("/api/consent/records/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not ConsentRecord.objects.exists()


def test_records_cannot_be_changed_or_deleted_through_the_api(writer, purposes):
    record = consent_record(
        profile=ProfileFactory(), purpose="analytics", status="granted", method="api"
    )
    url = f"/api/consent/records/{record.pk}/"
    assert writer.patch(url, {"status": "denied"}, format="json").status_code == 405
    assert writer.delete(url).status_code == 405


def test_withdraw_takes_effect_at_once(writer, purposes):
    profile = ProfileFactory()
    consent_record(profile=profile, purpose="email_marketing", status="granted", method="api")
    response = writer.post(
        "/api/consent/records/withdraw/",
        {"profile": profile.pk, "purpose": "email_marketing"},
        format="json",
    )
    assert response.status_code == 201
    assert ConsentState.objects.get(profile=profile).status == "withdrawn"


def test_withdraw_bad_input(writer, purposes):
    response = writer.post(
        "/api/consent/records/withdraw/", {"profile": 999999, "purpose": "x"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"profile", "purpose"}


def test_objection_withdraws_every_marketing_purpose(writer, purposes):
    profile = ProfileFactory()
    for code in ("email_marketing", "analytics"):
        consent_record(profile=profile, purpose=code, status="granted", method="api")
    response = writer.post("/api/consent/records/object/", {"profile": profile.pk}, format="json")
    assert response.status_code == 201
    withdrawn = {r["purpose"] for r in response.json()}
    assert withdrawn == {code for code, p in purposes.items() if p.is_marketing}
    states = dict(
        ConsentState.objects.filter(profile=profile).values_list("purpose__code", "status")
    )
    assert states["email_marketing"] == "withdrawn"
    assert states["analytics"] == "granted"  # not marketing: untouched


def test_history_returns_states_and_records(writer, purposes):
    profile = ProfileFactory()
    consent_record(profile=profile, purpose="analytics", status="granted", method="api")
    consent_record(profile=profile, purpose="analytics", status="withdrawn", method="api")
    body = writer.get(f"/api/consent/records/history/?profile={profile.pk}").json()
    assert [s["status"] for s in body["states"]] == ["withdrawn"]
    assert [r["status"] for r in body["records"]] == ["withdrawn", "granted"]


@pytest.mark.parametrize("query", ["", "?profile=abc", "?profile=999999"])
def test_history_bad_profile(writer, query):
    response = writer.get(f"/api/consent/records/history/{query}")
    assert response.status_code == 400
    assert "profile" in response.json()["errors"]


def test_record_list_masks_proof_for_a_key_without_pii(reader, purposes):
    consent_record(
        profile=ProfileFactory(),
        purpose="email_marketing",
        status="granted",
        method="web_form",
        identifier_kind="email",
        identifier_value="anna.devries@example.com",
        ip_address="192.0.2.55",
    )
    row = reader.get("/api/consent/records/").json()["results"][0]
    assert "anna.devries" not in row["identifier_value"]
    assert row["ip_address"] != "192.0.2.55"


def test_import_keeps_good_rows_and_reports_bad_ones(writer, purposes):
    IdentityFactory(kind="email", value="known@example.com")
    rows = [
        {
            "email": "known@example.com",
            "purpose": "email_marketing",
            "status": "granted",
            "occurred_at": "2026-01-05T10:00:00Z",
            "ip_address": "192.0.2.9",
        },
        {
            "email": "stranger@example.com",
            "purpose": "email_marketing",
            "status": "granted",
            "occurred_at": "2026-01-05T10:00:00Z",
        },
    ]
    response = writer.post("/api/consent/records/import/", {"rows": rows}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "created": 1,
        "errors": [
            {"row": 3, "column": "email", "message": "no profile has email 'stranger@example.com'"}
        ],
    }


def test_import_bad_payload(writer):
    response = writer.post("/api/consent/records/import/", {"rows": []}, format="json")
    assert response.status_code == 400
    assert "rows" in response.json()["errors"]


def test_states_filter_by_purpose(reader, purposes):
    profile = ProfileFactory()
    consent_record(profile=profile, purpose="analytics", status="granted", method="api")
    consent_record(profile=profile, purpose="advertising", status="denied", method="api")
    rows = reader.get(f"/api/consent/states/?profile={profile.pk}&purpose=advertising").json()
    assert [(r["purpose"], r["status"]) for r in rows["results"]] == [("advertising", "denied")]


def test_dsar_create_and_validation(writer):
    response = writer.post(
        "/api/consent/requests/",
        {"kind": "access", "subject_email": "anna@example.com"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    request_ = DataSubjectRequest.objects.get(pk=response.json()["id"])
    assert request_.status == "received"
    assert (request_.due_at - request_.received_at).days == 30

    bad = writer.post("/api/consent/requests/", {"kind": "access"}, format="json")
    assert bad.status_code == 400
    assert "subject_email" in bad.json()["errors"]
    bad_kind = writer.post(
        "/api/consent/requests/", {"kind": "forget", "subject_email": "a@b.nl"}, format="json"
    )
    assert "kind" in bad_kind.json()["errors"]


def test_dsar_overdue_filter(reader):
    from datetime import timedelta

    from django.utils import timezone

    late = DataSubjectRequest.objects.create(
        kind="access", subject_email="a@example.org", due_at=timezone.now() - timedelta(days=1)
    )
    DataSubjectRequest.objects.create(kind="access", subject_email="b@example.org")
    rows = reader.get("/api/consent/requests/?overdue=true").json()["results"]
    assert [r["id"] for r in rows] == [late.pk]
    assert rows[0]["is_overdue"] is True
    assert rows[0]["subject_email"] != "a@example.org"  # masked without pii:read


def test_processing_activity_create_and_bad_input(writer, purposes):
    payload = {
        "name": "Newsletter",
        "purposes": ["email_marketing"],
        "lawful_basis": "consent",
        "data_subjects": "Customers",
        "data_categories": "Contact data",
    }
    response = writer.post("/api/consent/processing-activities/", payload, format="json")
    assert response.status_code == 201, response.json()
    assert ProcessingActivity.objects.get().purposes.get().code == "email_marketing"
    bad = writer.post(
        "/api/consent/processing-activities/",
        {**payload, "name": "Other", "purposes": ["nope"]},
        format="json",
    )
    assert bad.status_code == 400 and "purposes" in bad.json()["errors"]


def test_retention_policy_update_and_bad_input(writer, purposes):
    policy = writer.get("/api/consent/retention-policies/").json()["results"][0]
    url = f"/api/consent/retention-policies/{policy['id']}/"
    assert writer.patch(url, {"retention_days": 45}, format="json").json()["retention_days"] == 45
    assert writer.patch(url, {"retention_days": -1}, format="json").status_code == 400


def test_openapi_schema_lists_consent_actions(client):
    schema = client.get("/api/schema/").content.decode()
    for path in (
        "/api/consent/records/grant/",
        "/api/consent/records/history/",
        "/api/consent/records/tcf/",
        "/api/consent/requests/",
    ):
        assert path in schema


def test_tcf_endpoint_records_mapped_purposes(writer, purposes):
    from tests.consent.tcf_strings import tcf_core_string

    profile = ProfileFactory()
    response = writer.post(
        "/api/consent/records/tcf/",
        {"profile": profile.pk, "tcf_string": tcf_core_string({1, 5, 6})},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert {r["purpose"]: r["status"] for r in response.json()}["personalisation"] == "granted"
    bad = writer.post(
        "/api/consent/records/tcf/", {"profile": profile.pk, "tcf_string": "%%%"}, format="json"
    )
    assert bad.status_code == 400 and "tcf_string" in bad.json()["errors"]


def test_processing_register_csv_export(reader, purposes, api_client_with_scopes):
    from tests.factories import ProcessingActivityFactory

    ProcessingActivityFactory(name="Loyalty programme").purposes.add(purposes["analytics"])
    response = reader.get("/api/consent/processing-activities/export/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[1].startswith("Loyalty programme,") and "analytics" in lines[1]
    no_scope = api_client_with_scopes("crm:read").get("/api/consent/processing-activities/export/")
    assert no_scope.status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "/api/consent/states/?profile=abc",
        "/api/consent/records/?status=maybe",
        "/api/consent/requests/?kind=forget",
        "/api/consent/records/?occurred_at__gte=yesterday",
    ],
)
def test_list_filters_refuse_bad_values(reader, url):
    response = reader.get(url)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_processing_register_export_neutralises_formulas(reader, purposes):
    from tests.factories import ProcessingActivityFactory

    ProcessingActivityFactory(name="=1+1", controller="Café Zoë B.V.")
    response = reader.get("/api/consent/processing-activities/export/")

    assert response.content.startswith(b"\xef\xbb\xbfname,description,controller")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0]["name"] == "'=1+1"
    assert rows[0]["controller"] == "Café Zoë B.V."
