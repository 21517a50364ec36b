"""The consent ledger is append-only in the database: the trigger refuses what code must not do."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from consent.models import ConsentRecord
from consent.services import consent_record
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def record(purposes):
    return consent_record(
        profile=ProfileFactory(),
        purpose="email_marketing",
        status="granted",
        method="web_form",
        identifier_kind="email",
        identifier_value="anna@example.com",
        ip_address="192.0.2.10",
        user_agent="Mozilla/5.0",
        form_url="https://shop.example.com/signup",
    )


def refused(**changes) -> bool:
    """Runs the update in a savepoint; True when the database refused it."""
    try:
        with transaction.atomic():
            ConsentRecord.objects.filter(**changes.pop("where")).update(**changes)
    except IntegrityError as error:
        assert "append-only" in str(error) or "anonymised" in str(error)
        return True
    return False


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "withdrawn"},
        {"method": "api"},
        {"source": "forged"},
        {"tcf_string": "CO..."},
        {"identifier_kind": "phone"},
    ],
)
def test_update_of_a_fact_column_is_refused(record, changes):
    assert refused(where={"pk": record.pk}, **changes)
    record.refresh_from_db()
    assert record.status == "granted"
    assert record.method == "web_form"


def test_delete_is_refused_by_the_database(record):
    # Raw SQL: no ORM protection in the way, only the trigger.
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM consent_consentrecord WHERE id = %s", [record.pk])
    assert ConsentRecord.objects.filter(pk=record.pk).exists()


def test_repointing_to_a_merge_survivor_is_allowed(record):
    survivor = ProfileFactory()
    assert not refused(where={"pk": record.pk}, profile=survivor)
    record.refresh_from_db()
    assert record.profile_id == survivor.pk


def test_proof_columns_may_be_anonymised(record):
    assert not refused(
        where={"pk": record.pk},
        identifier_value="erased:3f2a",
        ip_address=None,
        user_agent="",
        form_url="",
    )
    record.refresh_from_db()
    assert (record.identifier_value, record.ip_address, record.user_agent, record.form_url) == (
        "erased:3f2a",
        None,
        "",
        "",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"identifier_value": "someone-else@example.com"},
        {"ip_address": "198.51.100.7"},
        {"user_agent": "curl/8"},
        {"form_url": "https://elsewhere.example.com"},
    ],
)
def test_proof_columns_cannot_be_rewritten_to_another_value(record, changes):
    assert refused(where={"pk": record.pk}, **changes)


def test_deleting_the_profile_detaches_records_and_keeps_them(record):
    record.profile.delete()
    record.refresh_from_db()
    assert record.profile_id is None
    assert record.status == "granted"
