"""Tracking plans under concurrent processing: a message left for later (its person held by
another worker) is checked again when claimed again and counted once; workers counting the
same violations at once lose none."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from profiles.ingest import plans
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process, pending_process_batch
from profiles.models import Event, PendingMessage, TrackingPlanViolation
from profiles.resolution.identifiers import identifier_lock_key
from tests.factories import SourceFactory
from tests.profiles.test_processing_concurrency import run_workers
from tests.profiles.test_tracking_plans import ORDER_SCHEMA, order
from tests.server import current_database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


def plan_for(source, violation: str):
    plans.tracking_plan_create(
        name="Shop plan",
        status="active",
        events=[{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        sources=[{"source": source, "violation_action": violation}],
    )


def test_a_message_left_for_later_is_counted_once_when_processed():
    source = SourceFactory()
    plan_for(source, "omit")
    messages_collect(source_id=source.pk, messages=[order("m-1", coupon="X")])

    # Another worker holds the person: the message stays staged, nothing is counted.
    with psycopg.connect(current_database_url(), autocommit=False) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [identifier_lock_key(("user_id", "u-1"))])
        done, _, deferred = pending_process_batch(batch_size=10)
        assert (done, deferred) == (0, 1)
        assert PendingMessage.objects.get().payload["properties"]["coupon"] == "X"
        assert not TrackingPlanViolation.objects.exists()

    pending_process()

    assert "coupon" not in Event.objects.get().properties
    assert TrackingPlanViolation.objects.get().count == 1
    connection.close()


@pytest.mark.parametrize("violation", ["allow", "block"])
def test_concurrent_workers_count_every_violation_once(violation):
    # Given messages of a few people, every one breaking the plan twice
    source = SourceFactory()
    plan_for(source, violation)
    messages = []
    for i in range(120):
        message = order(f"m-{i}", revenue="12", coupon="X")
        message["userId"] = f"u-{i % 4}"
        messages.append(message)
    messages_collect(source_id=source.pk, messages=messages)

    # When four workers process them at once, in small batches (people held by one are left
    # for later by the others)
    errors = run_workers(count=4, batch_size=5)

    # Then each violation is counted once per message
    assert errors == []
    assert not PendingMessage.objects.exists()
    counts = {v.property: (v.count, v.blocked) for v in TrackingPlanViolation.objects.all()}
    blocked = 120 if violation == "block" else 0
    assert counts == {"revenue": (120, blocked), "coupon": (120, blocked)}
    assert Event.objects.count() == 120 - blocked
