"""The access package is made for the person: a readable summary by category with names, not
ids; JSON and CSV files named after what they hold; nothing empty; no staff or other people."""

from __future__ import annotations

import json
import zipfile

import pytest
from django.contrib.auth import get_user_model

from consent import access, registry
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.models import ProcessingActivity
from consent.services import consent_record
from crm.models import Contact
from tests.factories import EventFactory, IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def person(purposes):
    profile = ProfileFactory(traits={"firstName": "Marit", "lastName": "Oosterhuis"})
    IdentityFactory(profile=profile, kind="email", value="marit@example.org")
    for total in (40, 25, 12):
        EventFactory(profile=profile, name="Order Completed", properties={"total": total})
    consent_record(profile=profile, purpose="email_marketing", status="granted", method="web_form")
    rep = get_user_model().objects.create_user("jan.the.rep", password="pw-for-tests-1")
    Contact.objects.create(
        first_name="Marit", email="marit@example.org", profile=profile, owner=rep
    )
    return profile


def package(email="marit@example.org") -> zipfile.ZipFile:
    request = dsar_create(kind="access", email=email)
    dsar_verify(request=request)
    request = dsar_process(request=request)
    return zipfile.ZipFile(request.result_file.path)


def test_the_summary_groups_by_category_with_names_not_ids(person, purposes):
    activity = ProcessingActivity.objects.create(
        name="Newsletters",
        lawful_basis="consent",
        data_subjects="customers",
        data_categories="contact data, purchases",
        retention="until consent is withdrawn",
    )
    activity.purposes.add(purposes["email_marketing"])

    summary = package().read("summary.html").decode()

    for title in ("Your profile", "Your activity", "Your consent and choices", "Sales and support"):
        assert f"<h2>{title}</h2>" in summary
    purpose = purposes["email_marketing"]
    assert f"<td>{purpose.name}</td>" in summary  # the purpose's name, not its id
    assert '<th scope="col">Purpose</th>' in summary
    assert "Order Completed" in summary and "Marit" in summary
    assert "Identifiers we know you by" in summary
    assert "Newsletters" in summary and "until consent is withdrawn" in summary
    assert "profiles.Event" not in summary and "{&#x27;" not in summary


def test_files_are_named_after_what_they_hold_and_none_is_empty(person):
    archive = package()

    names = archive.namelist()
    assert names[:2] == ["summary.html", "data.json"]
    assert "activity/events.csv" in names and "customer/contacts.csv" in names
    tables = names[2:]
    assert all(name.endswith(".csv") and name.count(".") == 1 for name in tables)
    for name in tables:
        assert len(archive.read(name).decode("utf-8-sig").strip().splitlines()) >= 2, name
    data = json.loads(archive.read("data.json"))["data"]
    assert all(rows for tables in data.values() for rows in tables.values())
    assert "requests" in data  # the request itself is the person's data too


def test_staff_who_handled_the_records_are_not_in_the_package(person):
    archive = package()

    everything = "\n".join(archive.read(name).decode("utf-8-sig") for name in archive.namelist())
    assert "jan.the.rep" not in everything
    contact = json.loads(archive.read("data.json"))["data"]["customer"]["contacts"][0]
    rep = get_user_model().objects.get(username="jan.the.rep")
    assert "owner" not in contact and "owner_id" not in contact
    assert rep.pk not in contact.values()
    assert contact["email"] == "marit@example.org"


def test_a_long_table_is_cut_in_the_summary_only(person, monkeypatch):
    monkeypatch.setattr(access, "SUMMARY_ROWS", 2)

    archive = package()

    assert (
        "And 1 more: all of them are in <code>activity/events.csv</code>"
        in archive.read("summary.html").decode()
    )
    assert archive.read("activity/events.csv").decode("utf-8-sig").count("Order Completed") == 3


def test_nobody_known_gets_a_summary_that_says_so(purposes):
    archive = package("nobody@example.org")

    summary = archive.read("summary.html").decode()
    # Only the request itself is held.
    assert "Your requests" in summary and "Your profile" not in summary
    assert set(archive.namelist()[2:]) == {
        "requests/data-subject-requests.csv",
        "requests/data-subject-request-actions.csv",
    }


def test_every_category_is_explained():
    used = {holder.category for holder in registry.holders() if holder.export}
    assert used <= set(registry.CATEGORIES)
    assert all(title and text for title, text in registry.CATEGORIES.values())
