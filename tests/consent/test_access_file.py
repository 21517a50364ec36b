"""An access file holds the subject's data only (GDPR Art. 15(4)): rows that also hold other
people's values (a merge conflict, an import journal of a whole batch) give only their part."""

from __future__ import annotations

import json
import zipfile

import pytest

from consent.dsar import dsar_create, dsar_process, dsar_verify
from crm.imports import import_job_apply, import_job_create, import_job_validate
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Identity, MergeConflict
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

PHONE = "+31612340001"


def access_file(email: str) -> tuple[dict, str]:
    """The access file's data.json, and all its files as one text."""
    request = dsar_create(kind="access", email=email)
    dsar_verify(request=request)
    request = dsar_process(request=request)
    with zipfile.ZipFile(request.result_file.path) as archive:
        text = "\n".join(archive.read(name).decode() for name in archive.namelist())
        return json.loads(archive.read("data.json")), text


def test_access_file_of_a_person_in_a_conflict_names_nobody_else(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.CDPHUB_INGEST_PROCESSING = "off"
    source = SourceFactory()
    # Given two people sharing a phone: a merge conflict between their user ids
    for user_id, email in (("user-anna", "anna@example.com"), ("user-bert", "bert@example.com")):
        messages_collect(
            source_id=source.pk,
            messages=[
                {"type": "identify", "userId": user_id, "traits": {"email": email, "phone": PHONE}}
            ],
        )
        pending_process()
    conflict = MergeConflict.objects.get()
    bert = Identity.objects.get(value="user-bert").profile_id

    data, content = access_file("anna@example.com")

    assert data["data"]["profile"]["merge-conflicts"][0]["id"] == conflict.pk
    assert "user-bert" not in content
    assert "bert@example.com" not in content
    assert f'"other_profile_id": {bert}' not in content
    assert "links user ids" not in content


def test_access_file_gives_only_the_persons_entries_of_an_import_journal(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    data = b"first_name,email\nAnna,anna@example.com\nBert,bert@example.com\n"
    job = import_job_validate(
        job=import_job_create(
            resource="contacts", mode="upsert", key_field="email", file_name="f.csv", data=data
        )
    )
    import_job_apply(job=job)
    update = b"first_name,email\nAnnabel,anna@example.com\nBertus,bert@example.com\n"
    job = import_job_validate(
        job=import_job_create(
            resource="contacts", mode="upsert", key_field="email", file_name="g.csv", data=update
        )
    )
    import_job_apply(job=job)

    data, content = access_file("anna@example.com")

    entries = data["data"]["customer"]["import-changes"]
    assert [(entry["action"], entry["before"]) for entry in entries] == [
        ("created", None),
        ("updated", {"first_name": "Anna"}),
    ]
    assert "Anna" in content  # her own before-value
    assert "Bert" not in content
    assert "bert@example.com" not in content
