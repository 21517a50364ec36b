"""Erasure of a person who went through every path that copies their values somewhere else:
collection (staged, processed and rejected messages), a CRM import that linked their profile
and replaced its traits (with revert data), an import whose check quoted them in an error, a
merge and a merge conflict, an access request's file and an ad-platform export file. After
``manage.py dsar --kind erasure`` a full pg_dump and every file under MEDIA_ROOT are searched
for each of their values."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from audiences.services.exports import audience_export
from consent.services import consent_record
from crm.imports import (
    import_job_apply,
    import_job_create,
    import_job_link_profiles,
    import_job_validate,
)
from crm.models import Contact, ImportChange, ImportJob
from profiles.ingest.collect import source_cache_clear
from profiles.ingest.processing import pending_process
from profiles.models import (
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
    RejectedMessage,
    Segment,
    SegmentMembership,
)
from profiles.services import source_create
from tests.consent.test_erasure import pg_dump, sql_dump
from tests.profiles.test_collect import basic

EMAIL = "ottoline.vanderbijl@example.org"
PHONE = "+31612349876"
PHONE_TYPED = "06 1234 9876"
FIRST, LAST = "Ottoline", "Vanderbijl"
USER_ID = "cust-ottoline-5521"
ANON_ID = "anon-ottoline-5521"
LATER_ANON_ID = "anon-ottoline-later"
OTHER_EMAIL = "cornelis.bystander@example.org"
OTHER_USER_ID = "cust-cornelis-7700"
SHARED_DEVICE = "shared-kiosk-7"


def hashes(value: str) -> set[str]:
    return {hashlib.sha256(value.encode()).hexdigest()}


SECRETS = {
    EMAIL,
    PHONE,
    PHONE_TYPED,
    FIRST,
    LAST,
    USER_ID,
    ANON_ID,
    LATER_ANON_ID,
    *hashes(EMAIL),
    *hashes(PHONE),
    *hashes(PHONE.lstrip("+")),
}


def post_batch(client: Client, key: str, *messages: dict) -> dict:
    response = client.post(
        "/v1/batch",
        data=json.dumps({"batch": list(messages)}),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(key),
    )
    assert response.status_code == 200, response.content
    return response.json()


def collect_the_person(client: Client, key: str) -> None:
    # Browsing anonymously, then signing up: two profiles merged into one
    post_batch(client, key, {"type": "page", "anonymousId": LATER_ANON_ID, "name": "Home"})
    pending_process()
    post_batch(
        client,
        key,
        {
            "type": "identify",
            "userId": USER_ID,
            "anonymousId": ANON_ID,
            "traits": {"email": EMAIL, "phone": PHONE, "firstName": FIRST, "lastName": LAST},
            "context": {"ip": "198.51.100.23", "device": {"id": SHARED_DEVICE}},
        },
        {"type": "track", "userId": USER_ID, "event": "Order Completed", "properties": {"n": 3}},
        # Rejected, and kept with their reason: no event name
        {"type": "track", "userId": USER_ID, "traits": {"email": EMAIL}},
    )
    pending_process()
    post_batch(client, key, {"type": "identify", "userId": USER_ID, "anonymousId": LATER_ANON_ID})
    # A bystander on the same shop kiosk: a merge conflict between two user ids
    post_batch(
        client,
        key,
        {
            "type": "identify",
            "userId": OTHER_USER_ID,
            "traits": {"email": OTHER_EMAIL},
            "context": {"device": {"id": SHARED_DEVICE}},
        },
    )
    pending_process()
    assert ProfileMerge.objects.exists()
    assert MergeConflict.objects.exists()
    assert RejectedMessage.objects.filter(payload__traits__email=EMAIL).exists()


def import_the_person() -> None:
    # A CRM import that links the contact to the profile and replaces its traits
    data = (
        "first_name,last_name,email,phone,birth_date\n"
        f"{FIRST},{LAST}-Smit,{EMAIL.upper()},{PHONE_TYPED},\n"
        f"Cornelis,Bystander,{OTHER_EMAIL},,\n"
    ).encode()
    job = import_job_create(
        resource="contacts", mode="upsert", key_field="email", file_name="crm.csv", data=data
    )
    job = import_job_validate(job=job)
    assert job.status == ImportJob.Status.VALIDATED, job.errors
    import_job_apply(job=job)
    import_job_link_profiles(job=job)
    assert ImportChange.objects.filter(model="profiles.profile", action="updated").exists()
    # ... and a file whose check failed, quoting the person in its error report
    bad = f"first_name,last_name,email,birth_date\n{FIRST},{LAST},{EMAIL},not-a-date\n".encode()
    failed = import_job_validate(
        job=import_job_create(
            resource="contacts", mode="upsert", key_field="email", file_name="bad.csv", data=bad
        )
    )
    assert failed.status == ImportJob.Status.INVALID
    assert Contact.objects.filter(email=EMAIL).exists()


def export_the_person(settings) -> None:
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 1
    profile = Identity.objects.get(kind="email", value=EMAIL).profile
    consent_record(profile=profile, purpose="advertising", status="granted", method="web_form")
    segment = Segment.objects.create(name="Buyers", kind=Segment.Kind.STATIC)
    SegmentMembership.objects.create(
        segment=segment, profile=profile, entered_at=profile.created_at
    )
    for destination in ("google", "meta"):
        export = audience_export(
            destination=destination,
            profiles=Profile.objects.filter(memberships__segment=segment),
            segment=segment,
        )
        assert export.file, export.message
    call_command("dsar", kind="access", email=EMAIL)


def media_text(root: Path) -> str:
    """Every file under MEDIA_ROOT as text, zip archives opened."""
    chunks = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    chunks.append(archive.read(name).decode("utf-8", "replace"))
        else:
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def bytea_text() -> str:
    """Binary columns (stored import files) decoded: pg_dump writes them as hex."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'bytea'"
        )
        chunks = []
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT "{column}" FROM "{table}"')  # noqa: S608
            chunks += [bytes(value).decode("utf-8", "replace") for (value,) in cursor if value]
    return "\n".join(chunks)


def found(secrets: set[str], text: str) -> list[str]:
    lowered = text.lower()
    return sorted(secret for secret in secrets if secret.lower() in lowered)


@pytest.mark.django_db(transaction=True)
def test_erasure_after_every_path_leaves_no_value_in_the_database_or_the_files(
    purposes, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    settings.CDPHUB_INGEST_PROCESSING = "off"
    source_cache_clear()
    _, key = source_create(name="Web shop")
    client = Client()

    # Given a person who went through every path
    collect_the_person(client, key)
    import_the_person()
    export_the_person(settings)
    dump_before = pg_dump() or sql_dump()
    assert found({EMAIL, FIRST, USER_ID}, dump_before) == sorted({EMAIL, FIRST, USER_ID})
    assert found({EMAIL}, bytea_text()) == [EMAIL]
    files_before = media_text(tmp_path)
    assert found({EMAIL, *hashes(EMAIL)}, files_before) == sorted({EMAIL, *hashes(EMAIL)})

    # When they ask for erasure
    call_command("dsar", kind="erasure", email=EMAIL)

    # Then none of their values is left in a full dump or in any file
    dump = pg_dump()
    if os.environ.get("CI") == "true":
        assert dump is not None, "no pg_dump on this machine could dump the test database"
    dump = dump or sql_dump()
    assert OTHER_EMAIL in dump  # the dump is real and the bystander is kept
    leaks = found(SECRETS, dump + bytea_text())
    where = [line[:300] for line in (dump + bytea_text()).splitlines() if found(SECRETS, line)]
    assert leaks == [], where
    assert found(SECRETS, media_text(tmp_path)) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM crm_contact WHERE email = %s", [OTHER_EMAIL])
        assert cursor.fetchone()[0] == 1
