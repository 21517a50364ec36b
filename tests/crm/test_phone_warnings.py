"""A phone number that is possible for its country but in no assigned range (a reserved range,
or one newer than the numbering metadata) is kept on the contact with a warning, and never used
as an identifier; only an impossible value is refused. In the service, the import, the API and
the admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from crm import services
from crm.imports.jobs import import_job_apply
from crm.imports.linking import import_job_link_profiles
from crm.models import Contact
from profiles.models import Identity
from profiles.resolution.normalize import InvalidIdentifier, PhoneNotValid, normalize_phone
from tests.crm.test_imports import checked, csv_bytes

pytestmark = pytest.mark.django_db

RESERVED = "06 00000000"  # Dutch mobile length, in no assigned range
IMPOSSIBLE = "+31 12"


def test_identity_normalisation_tells_a_possible_number_from_an_impossible_one():
    with pytest.raises(PhoneNotValid) as possible:
        normalize_phone(RESERVED)
    with pytest.raises(InvalidIdentifier) as impossible:
        normalize_phone(IMPOSSIBLE)

    assert possible.value.e164 == "+31600000000"
    assert not isinstance(impossible.value, PhoneNotValid)


def test_a_contact_keeps_a_reserved_number_but_its_profile_is_not_found_by_it():
    contact = services.contact_create(first_name="Ann", email="ann@example.com", phone=RESERVED)
    other = services.contact_create(first_name="Bob", email="bob@example.com", phone=RESERVED)

    assert contact.phone == other.phone == "+31600000000"
    assert services.phone_warning(contact.phone) == services.PHONE_NOT_VALID
    assert contact.profile_id != other.profile_id  # the same filler joins no one
    assert not Identity.objects.filter(kind="phone").exists()
    contact.profile.refresh_from_db()
    assert "phone" not in contact.profile.traits


def test_an_impossible_number_is_refused_on_the_phone_field():
    with pytest.raises(ValidationError) as refused:
        services.contact_create(first_name="Ann", email="ann@example.com", phone=IMPOSSIBLE)

    assert "phone" in refused.value.message_dict
    assert not Contact.objects.exists()


def test_an_import_keeps_the_row_and_reports_a_warning():
    data = csv_bytes(
        "First name,E-mail,Phone",
        f"Ann,ann@example.com,{RESERVED}",
        f"Bob,bob@example.com,{IMPOSSIBLE}",
        "Cem,cem@example.com,0612345678",
    )

    job = import_job_apply(job=checked(data), valid_rows_only=True)
    import_job_link_profiles(job=job)

    assert (job.created_count, job.error_count, job.warning_count) == (2, 1, 1)
    assert job.warnings == [
        {"row": 2, "column": "C (Phone)", "value": RESERVED, "message": services.PHONE_NOT_VALID}
    ]
    assert job.errors[0]["row"] == 3
    assert Contact.objects.get(email="ann@example.com").phone == "+31600000000"
    assert Identity.objects.filter(kind="phone").count() == 1  # Cem's valid number only


def test_linking_takes_each_verdict_from_the_check_the_import_made(monkeypatch):
    data = csv_bytes(
        "First name,E-mail,Phone", f"Ann,ann@example.com,{RESERVED}", "Cem,c@example.com,0612345678"
    )
    job = import_job_apply(job=checked(data))
    checks = []
    monkeypatch.setattr(services, "phone_for_record", lambda value: checks.append(value))

    import_job_link_profiles(job=job)

    assert checks == []  # both numbers were remembered with their verdicts
    assert list(Identity.objects.filter(kind="phone").values_list("value", flat=True)) == [
        "+31612345678"
    ]


def test_remembered_verdicts_are_bounded(monkeypatch):
    monkeypatch.setattr(services, "PHONE_VERDICTS_KEPT", 2)
    monkeypatch.setattr(services, "PHONE_VERDICTS", {})
    for number in ("0612345671", "0612345672", "0612345673"):
        services.phone_for_record(number)

    assert services.PHONE_VERDICTS == {"+31612345673": None}
    assert services.phone_warning("+31600000000") == services.PHONE_NOT_VALID  # checked anew


def test_the_api_keeps_the_number_and_says_why_it_deserves_a_look(api_client_with_scopes):
    client = api_client_with_scopes("crm:read", "crm:write", "pii:read")

    created = client.post(
        "/api/crm/contacts/", {"first_name": "Ann", "phone": RESERVED}, format="json"
    )
    refused = client.post(
        "/api/crm/contacts/", {"first_name": "Bob", "phone": IMPOSSIBLE}, format="json"
    )

    assert created.status_code == 201, created.content
    assert created.json()["phone"] == "+31600000000"
    assert created.json()["warnings"] == [services.PHONE_NOT_VALID]
    assert refused.status_code == 400 and "phone" in refused.json()["errors"]


def test_the_admin_saves_and_warns(admin_client):
    answer = admin_client.post(
        reverse("admin:crm_contact_add"),
        {"first_name": "Ann", "phone": RESERVED, "lifecycle_stage": "lead"},
        follow=True,
    )

    assert answer.status_code == 200
    assert Contact.objects.get().phone == "+31600000000"
    assert "Saved, but the phone number is possible but not valid" in answer.content.decode()
