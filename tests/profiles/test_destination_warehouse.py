"""The warehouse kind against a real second PostgreSQL database (the machine's server, not the
one the tests run on): events in one table per type, profiles and identities, nothing stored
twice when a batch is sent again, an erasure deleting the person's rows everywhere; a database
that does not exist is a dead letter, one that cannot be reached is retried; the settings are
checked (an internal host is refused unless allowed) and the password masked."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cdphub.delivery import deliveries_send
from cdphub.models import Delivery
from consent.dsar import dsar_create, dsar_process, dsar_verify
from profiles.destinations.kinds import config_shown
from profiles.destinations.services import destination_create
from profiles.destinations.stream import destination_replay
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Identity
from profiles.services import source_create
from tests.cdphub.test_delivery import consent_grant

pytestmark = pytest.mark.django_db

SERVER = "postgres://postgres@127.0.0.1:5432"


def require_server() -> None:
    """Skip without the machine's PostgreSQL, except under CI, where this test must run."""
    try:
        psycopg.connect(f"{SERVER}/postgres", connect_timeout=2).close()
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            pytest.fail("CI must run the warehouse tests: no PostgreSQL on 127.0.0.1:5432")
        pytest.skip("needs a PostgreSQL server on 127.0.0.1:5432 as the warehouse")


@pytest.fixture
def warehouse_url():
    require_server()
    name = f"cdphub_warehouse_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def source(delivery_engine):
    return source_create(name="Web shop")[0]


def warehouse(url: str, **config):
    return destination_create(
        name="Warehouse",
        kind="warehouse",
        config={"database_url": url, **config},
        purpose_code="analytics",
    )[0]


def collect(source, user: str) -> None:
    messages = [
        {"type": "identify", "userId": user, "messageId": f"{user}-i",
         "traits": {"plan": "pro", "email": f"{user}@Example.com"}},
        {"type": "track", "userId": user, "event": "Order Completed", "messageId": f"{user}-t",
         "properties": {"revenue": 42}},
        {"type": "page", "userId": user, "name": "Pricing", "messageId": f"{user}-p"},
    ]  # fmt: skip
    assert not messages_collect(source_id=source.pk, messages=messages).rejected
    pending_process()
    consent_grant(user)


def rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(query).fetchall()


def test_events_profiles_and_identities_land_in_their_tables_once(source, warehouse_url):
    destination = warehouse(warehouse_url, schema="cdp")
    collect(source, "u-1")
    deliveries_send()
    profile_id = Identity.objects.get(value="u-1").profile_id

    assert rows(warehouse_url, "SELECT id, profile_id, event, properties FROM cdp.tracks") == [
        ("u-1-t", profile_id, "Order Completed", {"revenue": 42})
    ]
    assert rows(warehouse_url, "SELECT name FROM cdp.pages") == [("Pricing",)]
    assert rows(warehouse_url, "SELECT traits->>'plan' FROM cdp.identifies") == [("pro",)]
    [(traits,)] = rows(
        warehouse_url, f"SELECT traits FROM cdp.profiles WHERE profile_id = {profile_id}"
    )
    assert traits["plan"] == "pro"
    assert sorted(rows(warehouse_url, "SELECT kind, value FROM cdp.identities")) == [
        ("email", "u-1@example.com"),
        ("user_id", "u-1"),
    ]

    # Sent again (a replay of the last hour): nothing is stored twice.
    now = timezone.now()
    destination_replay(destination=destination, since=now - timedelta(hours=1), until=now)
    deliveries_send()
    assert Delivery.objects.filter(destination=destination, status="delivered").count() == 6
    assert rows(warehouse_url, "SELECT count(*) FROM cdp.tracks") == [(1,)]


def test_an_erasure_deletes_the_persons_rows_in_every_table(source, warehouse_url):
    warehouse(warehouse_url)
    collect(source, "u-1")
    collect(source, "u-2")
    deliveries_send()
    request = dsar_create(kind="erasure", user_id="u-1")
    dsar_verify(request=request)
    dsar_process(request=request)
    deliveries_send()

    for table in ("tracks", "pages", "identifies", "profiles", "identities"):
        assert rows(warehouse_url, f"SELECT count(*) FROM cdphub.{table}") == [
            (1 if table != "identities" else 2,)
        ], table
    assert rows(warehouse_url, "SELECT user_id FROM cdphub.tracks") == [("u-2",)]
    answers = request.actions.filter(action="destination_answer").values_list("note", flat=True)
    assert list(answers) == ["destination Warehouse: deleted"]


def test_a_missing_database_is_a_dead_letter(source):
    require_server()
    missing = warehouse(f"{SERVER}/cdphub_no_such_database")
    collect(source, "u-1")
    deliveries_send()
    dead = Delivery.objects.filter(destination=missing, status="dead")
    assert dead.count() == 3
    assert 'database "cdphub_no_such_database" does not exist' in dead.first().last_error


def test_a_server_that_is_down_is_retried(source):
    down = warehouse("postgres://postgres@127.0.0.1:1/warehouse")
    collect(source, "u-1")
    deliveries_send()
    waiting = Delivery.objects.filter(destination=down, status="pending")
    assert waiting.count() == 3
    assert waiting.first().attempts >= 1
    assert "the warehouse:" in waiting.first().last_error


def test_settings_are_checked_and_the_password_masked(source, delivery_engine):
    for config, message in (
        ({"database_url": "mysql://x@127.0.0.1/db"}, "database_url: like postgres://"),
        ({"database_url": f"{SERVER}/db", "schema": "Bad-Name"}, "schema: lower-case"),
    ):
        with pytest.raises(ValidationError) as refused:
            destination_create(name="W", kind="warehouse", config=config, purpose_code="analytics")
        assert message in str(refused.value)
    delivery_engine.CDPHUB_OUTBOUND_ALLOWLIST = []
    with pytest.raises(ValidationError) as refused:
        warehouse(f"{SERVER}/db")
    assert "127.0.0.1 is a loopback address" in str(refused.value)

    delivery_engine.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    destination = warehouse("postgres://cdp:s3cret@127.0.0.1:5432/analytics")
    assert "s3cret" not in str(config_shown(destination, may_change=False))
    assert "s3cret" in str(config_shown(destination, may_change=True))
