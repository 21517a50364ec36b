"""Imports that keep the good rows: next to all or nothing, an apply that writes the valid rows
and gives the others back as a file (the original columns and the reason) to fix and import
again; the preview says what each mode would write."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from crm.imports.jobs import import_job_apply, import_preview_summary
from crm.imports.revert import import_job_revert
from crm.models import Contact, ImportJob
from tests.crm.test_admin_imports import upload
from tests.crm.test_imports import checked, csv_bytes, job_for

pytestmark = pytest.mark.django_db

FILE = csv_bytes(
    "email,first_name,country",
    "anna@example.com,Anna,NL",
    "not-an-email,Bob,NL",
    "carl@example.com,Carl,NL",
    "dora@example.com,Dora,Nowhere",
    "eve@example.com,Eve,DE",
)


def rejected_rows(job: ImportJob) -> list[list[str]]:
    data = ImportJob.objects.filter(pk=job.pk).values_list("rejected_file", flat=True).get()
    return list(csv.reader(io.StringIO(bytes(data).decode("utf-8-sig"))))


def test_the_preview_says_what_each_mode_writes():
    job = checked(FILE)
    assert job.status == ImportJob.Status.INVALID
    assert import_preview_summary(job) == (
        "All or nothing writes nothing: 2 rows have errors. Valid rows only writes 3 rows "
        "(3 new, 0 updated) and gives the 2 others back in a file to fix."
    )


def test_valid_rows_are_written_and_the_others_given_back_with_the_reason():
    job = import_job_apply(job=checked(FILE), valid_rows_only=True)

    assert job.status == ImportJob.Status.APPLIED and job.valid_rows_only
    assert sorted(Contact.objects.values_list("first_name", flat=True)) == ["Anna", "Carl", "Eve"]
    assert "2 row(s) with errors were left out" in job.message
    header, *rows = rejected_rows(job)
    assert header == ["email", "first_name", "country", "import error"]
    assert [row[:3] for row in rows] == [
        ["not-an-email", "Bob", "NL"],
        ["dora@example.com", "Dora", "Nowhere"],
    ]
    assert "email" in rows[0][3] and "country" in rows[1][3]


def test_the_rejected_rows_fixed_import_again_as_they_are():
    job = import_job_apply(job=checked(FILE), valid_rows_only=True)
    header, bob, dora = rejected_rows(job)
    fixed = [header, ["bob@example.com", *bob[1:]], [dora[0], dora[1], "FR", dora[3]]]
    out = io.StringIO()
    csv.writer(out).writerows(fixed)
    again = import_job_apply(job=checked(out.getvalue().encode()))
    assert again.status == ImportJob.Status.APPLIED, again.errors
    assert Contact.objects.count() == 5


def test_all_or_nothing_stays_the_default_and_revert_undoes_the_valid_rows():
    refused = import_job_apply(job=job_for(FILE), checked_first=False)
    assert refused.status == ImportJob.Status.FAILED
    assert not Contact.objects.exists()
    job = import_job_apply(job=checked(FILE), valid_rows_only=True)
    import_job_revert(job=job, actor=None)
    assert not Contact.objects.exists()


def test_a_file_with_no_valid_row_writes_nothing():
    job = import_job_apply(
        job=checked(csv_bytes("email,first_name", "nope,Anna", "neither,Bob")), valid_rows_only=True
    )
    assert job.status == ImportJob.Status.APPLIED
    assert job.created_count == 0 and not Contact.objects.exists()
    assert len(rejected_rows(job)) == 3


def test_admin_applies_the_valid_rows_and_offers_the_rest(
    admin_client, django_capture_on_commit_callbacks, client, user_with_role
):
    with django_capture_on_commit_callbacks(execute=True):
        upload(admin_client, FILE)
    job = ImportJob.objects.get()
    page = admin_client.get(reverse("admin:crm_importjob_change", args=[job.pk])).content.decode()
    assert "Valid rows only writes 3 rows" in page
    assert "Apply the valid rows (3 new, 0 updated) and give me the rest" in page

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:crm_importjob_apply", args=[job.pk]), {"valid_rows_only": "1"}
        )
    assert Contact.objects.count() == 3
    download = admin_client.get(reverse("admin:crm_importjob_rejected", args=[job.pk]))
    assert download.status_code == 200
    assert "not-an-email" in download.content.decode("utf-8-sig")
    client.force_login(user_with_role("Analyst"))
    assert client.get(reverse("admin:crm_importjob_rejected", args=[job.pk])).status_code == 403


def test_the_command_line_writes_the_valid_rows_and_saves_the_rest(tmp_path):
    source = tmp_path / "people.csv"
    source.write_bytes(FILE)
    rejected = tmp_path / "to-fix.csv"
    out = io.StringIO()
    call_command(
        "import_file",
        str(source),
        "--resource=contacts",
        "--mode=upsert",
        "--key=email",
        f"--valid-rows-only={rejected}",
        stdout=out,
    )
    assert Contact.objects.count() == 3
    assert "The rows left out are in" in out.getvalue()
    assert "not-an-email" in rejected.read_text(encoding="utf-8-sig")


def test_the_command_line_can_ignore_unknown_columns_with_a_warning(tmp_path):
    from django.core.management.base import CommandError

    source = tmp_path / "people.csv"
    source.write_bytes(csv_bytes("email,first_name,Favourite colour", "anna@example.com,Anna,red"))
    arguments = [str(source), "--resource=contacts", "--mode=upsert", "--key=email"]
    with pytest.raises(CommandError, match="Favourite colour"):
        call_command("import_file", *arguments, stdout=io.StringIO(), stderr=io.StringIO())
    assert not Contact.objects.exists()
    err = io.StringIO()
    call_command("import_file", *arguments, "--skip-unknown", stdout=io.StringIO(), stderr=err)
    assert Contact.objects.get().first_name == "Anna"
    assert "ignored: 'Favourite colour'" in err.getvalue()


def test_revert_asks_first_and_says_what_it_will_undo(
    admin_client, django_capture_on_commit_callbacks
):
    Contact.objects.create(email="anna@example.com", first_name="Old")
    with django_capture_on_commit_callbacks(execute=True):
        upload(admin_client, FILE)
    job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:crm_importjob_apply", args=[job.pk]), {"valid_rows_only": "1"}
        )
    url = reverse("admin:crm_importjob_revert", args=[job.pk])
    page = admin_client.get(url).content.decode()
    assert "delete 2 contacts it created" in page
    assert "contacts it updated their previous values" in page  # by the import and linking
    assert "profiles it created" in page  # profile linking is undone too
    assert Contact.objects.count() == 3  # asking changed nothing

    changelist = reverse("admin:crm_importjob_changelist")
    asked = admin_client.post(changelist, {"action": "revert", "_selected_action": [job.pk]})
    assert "Yes, revert" in asked.content.decode()
    assert ImportJob.objects.get().status == ImportJob.Status.APPLIED
    admin_client.post(
        changelist, {"action": "revert", "_selected_action": [job.pk], "confirmed": "yes"}
    )
    assert ImportJob.objects.get().status == ImportJob.Status.REVERTED
    assert list(Contact.objects.values_list("first_name", flat=True)) == ["Old"]


def test_records_created_without_an_owner_get_the_chosen_one_or_a_team_in_turn(
    user_with_role, admin_client, django_capture_on_commit_callbacks
):
    from crm.models import SalesTeam

    ann, bob = user_with_role("Sales", "ann"), user_with_role("Sales", "bob")
    team = SalesTeam.objects.create(name="North")
    team.members.set([ann, bob])
    data = csv_bytes(
        "email,first_name,owner",
        "a@example.com,A,",
        "b@example.com,B,",
        "c@example.com,C,bob",
        "d@example.com,D,",
    )
    job = import_job_apply(job=checked(data, new_records_team=team))
    owners = dict(Contact.objects.values_list("first_name", "owner__username"))
    assert owners == {"A": "ann", "B": "bob", "C": "bob", "D": "ann"}

    with django_capture_on_commit_callbacks(execute=True):
        upload(
            admin_client,
            csv_bytes("email,first_name", "e@example.com,E"),
            new_records_owner=bob.pk,
        )
    upload_job = ImportJob.objects.exclude(pk=job.pk).get()
    assert upload_job.new_records_owner == bob
    both = upload(
        admin_client,
        csv_bytes("email", "f@example.com"),
        new_records_owner=bob.pk,
        new_records_team=team.pk,
    )
    assert "not both" in both.content.decode()
