import io

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from openpyxl import Workbook

from crm.importfiles import ImportRefused
from crm.imports import run
from crm.imports.classify import Classifier
from crm.imports.jobs import import_job_apply, import_job_create, import_job_validate
from crm.imports.linking import import_job_link_profiles
from crm.imports.revert import import_job_revert
from crm.models import Company, Contact, Deal, ImportChange, ImportJob, Tag
from crm.tasks import run_import_job_task
from profiles.models import Identity, Profile
from tests import factories
from tests.crm.test_services import suppress

pytestmark = pytest.mark.django_db


def csv_bytes(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def job_for(data: bytes, resource="contacts", mode="upsert", key="email", name="f.csv", **kw):
    return import_job_create(
        resource=resource, mode=mode, key_field=key, file_name=name, data=data, **kw
    )


def checked(data: bytes, **kw) -> ImportJob:
    return import_job_validate(job=job_for(data, **kw))


def imported(data: bytes, **kw) -> ImportJob:
    job = checked(data, **kw)
    assert job.status == ImportJob.Status.VALIDATED, job.errors
    job = import_job_apply(job=job)
    import_job_link_profiles(job=job)  # the background step queued after commit
    return job


def messages(job: ImportJob) -> list[str]:
    return [f"{e['row']}|{e['column']}|{e['message']}" for e in job.errors]


# --- happy paths ------------------------------------------------------------------------------


def test_contacts_import_with_synonym_headers_creates_and_links_profiles():
    data = csv_bytes(
        "Voornaam,Achternaam,E-mail address,Telefoon,Bedrijf,Lifecycle,Tags,Geboortedatum",
        'Anna,Jansen,Anna@Example.com,0612345678,Acme,Customer,"vip, fair",31-01-1990',
        "Bob,Smit,bob@example.com,,Acme,lead,,",
    )

    job = imported(data)

    assert (job.status, job.created_count, job.error_count) == ("applied", 2, 0)
    anna = Contact.objects.get(email="anna@example.com")
    assert (anna.first_name, anna.phone, anna.lifecycle_stage) == (
        "Anna",
        "+31612345678",
        "customer",
    )
    assert str(anna.date_of_birth) == "1990-01-31"
    assert sorted(anna.tags.values_list("name", flat=True)) == ["fair", "vip"]
    assert Company.objects.get().name == "Acme"  # created once for both rows
    assert anna.profile.traits["company"] == "Acme"
    assert (
        Identity.objects.get(kind="crm_contact", value=str(anna.pk)).profile_id == anna.profile_id
    )


def test_xlsx_import():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["First Name", "Email", "Date of birth"])
    sheet.append(["Eva", "eva@example.com", "1985-05-05"])
    buffer = io.BytesIO()
    workbook.save(buffer)

    job = imported(buffer.getvalue(), name="people.xlsx")

    assert job.created_count == 1
    assert str(Contact.objects.get().date_of_birth) == "1985-05-05"


def test_dry_run_previews_changes_and_writes_nothing():
    factories.ContactFactory(email="known@example.com", job_title="Intern")
    data = csv_bytes("email,job title", "known@example.com,CEO", "new@example.com,CTO")

    job = checked(data)

    assert (job.created_count, job.updated_count) == (1, 1)
    preview = {entry["row"]: entry for entry in job.preview}
    assert preview[2]["outcome"] == "updated"
    assert preview[2]["changes"] == {"job_title": ["Intern", "CEO"]}
    assert preview[3]["outcome"] == "new"
    assert Contact.objects.get(email="known@example.com").job_title == "Intern"
    assert Contact.objects.count() == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("create", (1, 0, 1)), ("update", (0, 1, 1)), ("upsert", (1, 1, 0))],
)
def test_modes(mode, expected):
    factories.ContactFactory(email="known@example.com", job_title="Intern")
    data = csv_bytes("email,job title", "known@example.com,CEO", "new@example.com,CTO")

    job = imported(data, mode=mode)

    assert (job.created_count, job.updated_count, job.skipped_count) == expected


def test_external_id_as_key_and_map_override():
    factories.ContactFactory(external_id="HS-1", first_name="Old")
    data = csv_bytes("Record ref,Naam", "HS-1,New")

    job = imported(
        data, key="external_id", overrides={"Record ref": "external_id", "Naam": "first_name"}
    )

    assert job.updated_count == 1
    assert Contact.objects.get().first_name == "New"


def test_revert_deletes_created_rows_and_restores_updated_ones():
    known = factories.ContactFactory(email="known@example.com", job_title="Intern")
    data = csv_bytes("email,job title,tags", "known@example.com,CEO,vip", "new@example.com,CTO,")
    job = imported(data)
    assert Contact.objects.count() == 2

    import_job_revert(job=job)

    known.refresh_from_db()
    assert known.job_title == "Intern"
    assert not known.tags.exists()
    assert list(Contact.objects.all()) == [known]
    assert not Identity.objects.filter(value="new@example.com").exists()
    assert ImportJob.objects.get(pk=job.pk).status == "reverted"
    with pytest.raises(ImportRefused):
        import_job_revert(job=job)


def test_revert_removes_only_the_tags_the_import_added_to_existing_records():
    # given a company tagged "partner", which an import tags "vip" (a new tag) and "partner",
    # and a marketer who tags it "key account" after the import
    acme = factories.CompanyFactory(domain="acme.example")
    acme.tags.add(factories.TagFactory(name="partner"))
    data = csv_bytes("domain,tags", "acme.example,vip;partner")
    job = imported(data, resource="companies", key="domain", mode="update")
    assert sorted(acme.tags.values_list("name", flat=True)) == ["partner", "vip"]
    acme.tags.add(factories.TagFactory(name="key account"))

    import_job_revert(job=job)

    assert sorted(acme.tags.values_list("name", flat=True)) == ["key account", "partner"]
    assert not Tag.objects.filter(name="vip").exists()


def test_revert_keeps_a_tag_the_import_created_once_others_use_it():
    known = factories.ContactFactory(email="known@example.com")
    job = imported(csv_bytes("email,tags", "known@example.com,vip"))
    other = factories.CompanyFactory()
    other.tags.add(Tag.objects.get(name="vip"))

    import_job_revert(job=job)

    assert not known.tags.exists()
    assert list(other.tags.values_list("name", flat=True)) == ["vip"]


def test_revert_removes_identities_linking_added_to_existing_profiles():
    # given a CDP profile known by e-mail only, then imported as a contact with a phone
    profile = factories.IdentityFactory(kind="email", value="known@example.com").profile
    before = set(Identity.objects.values_list("profile_id", "kind", "value"))
    job = imported(csv_bytes("email,phone", "known@example.com,+31612345678"))
    assert Contact.objects.get().profile_id == profile.pk
    assert profile.identities.filter(kind="phone", value="+31612345678").exists()

    import_job_revert(job=job)

    assert set(Identity.objects.values_list("profile_id", "kind", "value")) == before
    assert not Contact.objects.exists()
    assert Profile.objects.filter(pk=profile.pk).exists()


def test_revert_gives_existing_profiles_their_traits_back():
    # given a CDP profile whose e-mail an import brings with another first name and a job
    traits = {"firstName": "Ann", "email": "known@example.com", "plan": "gold"}
    profile = factories.ProfileFactory(traits=traits)
    factories.IdentityFactory(profile=profile, kind="email", value="known@example.com")
    job = imported(csv_bytes("email,first name,job title", "known@example.com,Anna,CEO"))
    profile.refresh_from_db()
    assert (profile.traits["firstName"], profile.traits["jobTitle"]) == ("Anna", "CEO")

    import_job_revert(job=job)

    profile.refresh_from_db()
    assert profile.traits == traits


def test_revert_unlinks_existing_contacts_from_the_profiles_linking_gave_them():
    # given two contacts not linked to the CDP yet: one whose e-mail a profile has, one new
    # to the CDP, both updated by an import and then linked
    known = factories.ContactFactory(email="known@example.com", job_title="Intern")
    stranger = factories.ContactFactory(email="stranger@example.com", job_title="Intern")
    profile = factories.IdentityFactory(kind="email", value="known@example.com").profile
    data = csv_bytes("email,job title", "known@example.com,CEO", "stranger@example.com,CEO")
    job = imported(data)
    known.refresh_from_db()
    stranger.refresh_from_db()
    assert known.profile_id == profile.pk
    assert stranger.profile_id not in (None, profile.pk)
    created_profile = stranger.profile_id

    import_job_revert(job=job)

    known.refresh_from_db()
    stranger.refresh_from_db()
    assert (known.job_title, known.profile_id) == ("Intern", None)
    assert (stranger.job_title, stranger.profile_id) == ("Intern", None)
    assert not Profile.objects.filter(pk=created_profile).exists()
    assert list(profile.identities.values_list("kind", "value")) == [("email", "known@example.com")]


def test_companies_and_deals_import():
    stage = factories.StageFactory(name="Proposal", probability=40)
    contact = factories.ContactFactory(email="buyer@example.com")
    companies = csv_bytes("Company name,Website,Industry", "Acme,https://www.acme.example/,Retail")
    deals = csv_bytes(
        "Deal name,Stage,Amount,Company domain,Contact email,Expected close date",
        'Acme renewal,Proposal,"1,250.50",acme.example,buyer@example.com,2027-01-31',
    )

    imported(companies, resource="companies", key="domain")
    job = imported(deals, resource="deals", key="name")

    deal = Deal.objects.get()
    assert job.created_count == 1
    assert (deal.stage, deal.pipeline_id, str(deal.amount)) == (stage, stage.pipeline_id, "1250.50")
    assert (deal.company.domain, deal.contact, deal.probability) == ("acme.example", contact, 40)


def test_activities_import():
    contact = factories.ContactFactory(email="buyer@example.com")
    data = csv_bytes(
        "Type,Subject,Contact email,Due", "Call,Follow up,buyer@example.com,2027-01-31 10:00"
    )

    job = imported(data, resource="activities", mode="create", key="id")

    assert job.created_count == 1
    assert contact.activities.get().kind == "call"


def test_celery_task_checks_then_applies():
    job = job_for(csv_bytes("email", "a@example.com"))

    run_import_job_task(job.pk)
    assert ImportJob.objects.get(pk=job.pk).status == "validated"
    run_import_job_task(job.pk, apply=True)
    run_import_job_task(job.pk, apply=True)  # a second delivery does nothing

    assert ImportJob.objects.get(pk=job.pk).status == "applied"
    assert Contact.objects.count() == 1


# --- bad input ------------------------------------------------------------------------------------


def test_bad_cells_name_row_and_column():
    data = csv_bytes(
        "email,phone,date of birth",
        "ok@example.com,+31612345678,1990-01-01",
        "not-an-email,12,yesterday",
    )

    job = checked(data)

    assert job.status == "invalid"
    assert messages(job) == [
        "3|A (email)|e-mail 'not-an-email' is not a valid address",
        "3|B (phone)|phone '12' is not a valid phone number",
        "3|C (date of birth)|'yesterday' is not a date (use YYYY-MM-DD or DD-MM-YYYY)",
    ]


def test_overlong_email_is_a_cell_error():
    address = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".example"

    job = checked(csv_bytes("email", address))

    assert messages(job) == ["2|A (email)|e-mail is longer than 255 characters"]


def test_nul_byte_in_a_cell_is_a_cell_error_and_nothing_is_written():
    # Given a CSV whose NUL byte comes after the first 8 KB the file check looks at
    rows = [f"person{n}@example.com,Name{n}" for n in range(400)]
    data = csv_bytes("email,first name", *rows, "late@example.com,Ann\x00e")
    assert b"\x00" not in data[:8192]

    # When it is checked, and when another copy is applied without a check first
    job = checked(data)
    applied = import_job_apply(job=job_for(data), checked_first=False)

    # Then both refuse the cell with its row and column, and no row reached the database
    error = "402|B (first name)|" + run.NUL_IN_CELL
    assert job.status == ImportJob.Status.INVALID
    assert messages(job) == [error]
    assert job.errors[0]["value"] == "Ann\\u0000e"
    assert applied.status == ImportJob.Status.FAILED
    assert messages(applied) == [error]
    assert applied.message == "1 row error(s): nothing was written."
    assert not Contact.objects.exists()


def test_bad_number_in_deal_import():
    factories.StageFactory(name="Proposal")
    data = csv_bytes("name,stage,amount,probability", "X,Proposal,lots,150")

    job = checked(data, resource="deals", key="name")

    assert messages(job) == [
        "2|C (amount)|'lots' is not a number",
        "2|D (probability)|'150' must be between 0 and 100",
    ]


def test_duplicate_keys_in_file():
    job = checked(csv_bytes("email", "a@example.com", "b@example.com", "A@example.com"))

    assert messages(job) == ["4|A (email)|duplicate email 'a@example.com': already on row 2"]


def test_unknown_and_missing_columns():
    job = checked(csv_bytes("first name,shoe size", "Anna,38"))

    assert job.status == "invalid"
    assert "Column B ('shoe size') is not a contacts field" in job.message
    assert "The key column 'email' is missing" in job.message


def test_missing_required_column_for_create():
    job = checked(csv_bytes("name,amount", "Deal,10"), resource="deals", key="name")

    assert "Column 'stage' is required to create deals" in job.message


def test_wrong_encoding():
    data = "email,first name\nanna@example.com,José\n".encode("latin-1")

    job = checked(data)

    assert job.status == "invalid"
    assert "Row 2: the file is not UTF-8 encoded" in job.message


def test_header_only_file():
    job = checked(csv_bytes("email,first name"))

    assert job.message == "The file has a header row but no data rows."


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty."),
        (b"  \n\n", "The file is empty."),
        (b"%PDF-1.4\x00\x01\x02binary", "f.csv is not a spreadsheet"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest", "Old Excel (.xls) files are not supported"),
    ],
)
def test_files_refused_before_storing(data, message):
    with pytest.raises(ImportRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        job_for(data)
    assert not ImportJob.objects.exists()


def test_oversize_file_is_refused(settings):
    settings.CDPHUB_IMPORT_MAX_BYTES = 100

    with pytest.raises(ImportRefused, match="the limit is"):
        job_for(csv_bytes("email", *[f"p{i}@example.com" for i in range(20)]))


def test_broken_xlsx():
    job = checked(b"PK\x03\x04not really a zip", name="x.xlsx")

    assert job.message == "The file is not a readable XLSX workbook."


def test_bad_key_and_mode_are_refused():
    with pytest.raises(ImportRefused, match="cannot key a contacts import"):
        job_for(csv_bytes("email", "a@example.com"), key="shoe_size")
    with pytest.raises(ImportRefused, match="Unknown mode"):
        job_for(csv_bytes("email", "a@example.com"), mode="merge")


def test_suppressed_people_are_skipped_with_reason():
    suppress("email", "erased@example.com")

    job = imported(csv_bytes("email", "erased@example.com", "kept@example.com"))

    assert (job.created_count, job.skipped_count) == (1, 1)
    assert job.preview[0]["reason"] == "erased on request (suppression list)"
    assert list(Contact.objects.values_list("email", flat=True)) == ["kept@example.com"]


def test_apply_is_all_or_nothing(monkeypatch):
    # given a checked deal import whose second batch refers to a contact deleted meanwhile
    factories.StageFactory(name="Proposal")
    factories.ContactFactory(email="one@example.com")
    gone = factories.ContactFactory(email="gone@example.com")
    monkeypatch.setattr(run, "BATCH_SIZE", 1)
    data = csv_bytes(
        "name,stage,contact email", "D1,Proposal,one@example.com", "D2,Proposal,gone@example.com"
    )
    job = checked(data, resource="deals", key="name")
    assert job.status == "validated"
    gone.delete()

    job = import_job_apply(job=job)

    assert job.status == "failed"
    assert job.message == "1 row error(s): nothing was written."
    assert messages(job) == ["3|C (contact email)|no contact with e-mail 'gone@example.com'"]
    assert not Deal.objects.exists()
    assert not ImportChange.objects.exists()


def test_apply_rolls_back_every_batch_when_the_database_refuses_a_write(monkeypatch):
    # given a checked import in batches of two, and another writer creating the key of the
    # second batch's first row once that batch was checked against the database
    monkeypatch.setattr(run, "BATCH_SIZE", 2)
    data = csv_bytes("external id,email", *[f"x-{n},c{n}@example.com" for n in range(6)])
    job = checked(data, key="external_id")
    existing = Classifier.existing

    def existing_then_concurrent_insert(self, keys, names):
        found = existing(self, keys, names)
        if "x-2" in keys:
            factories.ContactFactory(external_id="x-2")
        return found

    monkeypatch.setattr(Classifier, "existing", existing_then_concurrent_insert)

    with pytest.raises(IntegrityError, match="external_id"):
        import_job_apply(job=job)

    assert not Contact.objects.filter(external_id__in=["x-0", "x-1"]).exists()
    assert not ImportChange.objects.exists()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED  # not left "applying"
    assert "nothing was written" in job.message
    assert "IntegrityError" in job.message


def test_unvalidated_job_cannot_be_applied():
    job = job_for(csv_bytes("email", "a@example.com"))

    with pytest.raises(ImportRefused, match="check it first"):
        import_job_apply(job=job)


# --- command line -----------------------------------------------------------------------------


def test_import_file_command(tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes("Given name,E-mail", "Anna,anna@example.com"))

    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "import_file", str(path), "--resource", "contacts", "--mode", "upsert", "--key", "email"
        )

    assert Contact.objects.get().first_name == "Anna"
    assert ImportJob.objects.get().status == "applied"
    assert Profile.objects.count() == 1


def test_import_file_command_dry_run_and_map(tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes("Mail,Remark", "anna@example.com,hello"))

    call_command(
        "import_file",
        str(path),
        "--resource=contacts",
        "--mode=create",
        "--key=email",
        "--map",
        "Mail=email",
        "--map",
        "Remark=-",
        "--dry-run",
    )

    assert ImportJob.objects.get().status == "validated"
    assert not Contact.objects.exists()


def test_import_file_command_reports_errors(tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes("email", "broken"))

    with pytest.raises(CommandError, match="Nothing was written"):
        call_command(
            "import_file", str(path), "--resource=contacts", "--mode=create", "--key=email"
        )
    with pytest.raises(CommandError, match="must look like"):
        call_command(
            "import_file",
            str(path),
            "--resource=contacts",
            "--mode=create",
            "--key=email",
            "--map",
            "nonsense",
        )


def test_import_neither_shows_nor_changes_another_teams_records(sales_org):
    mate, rival = sales_org.contacts["mate"], sales_org.contacts["rival"]
    data = csv_bytes(
        "email,job_title",
        f"{mate.email},Buyer",
        f"{rival.email},Spy",
        "nobody.known@example.com,Spy",
    )

    job = checked(data, mode="update", created_by=sales_org.me)

    # The other team's contact answers exactly like an e-mail nobody has
    assert job.status == ImportJob.Status.VALIDATED
    assert [row["outcome"] for row in job.preview] == ["updated", "skipped", "skipped"]
    hidden, unknown = job.preview[1]["reason"], job.preview[2]["reason"]
    assert hidden.replace(rival.email, "X") == unknown.replace("nobody.known@example.com", "X")
    assert "sales team" not in str(job.preview) + str(job.errors)
    import_job_apply(job=job)
    rival.refresh_from_db()
    assert rival.job_title == ""


def test_import_from_the_command_line_is_not_limited(sales_org):
    rival = sales_org.contacts["rival"]
    data = csv_bytes("email,job_title", f"{rival.email},Buyer")

    job = imported(data, mode="update")

    assert job.updated_count == 1
