from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Category, DataProvider, Visitor, VisitorTraitHit
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.models import DataSubjectRequest, RetentionPolicy
from consent.retention import delete_in_batches
from consent.services import ConsentError, retention_purge, retention_run_all
from profiles.models import Event
from tests.factories import EventFactory, IdentityFactory

REDIS_URL = os.environ.get("CDPHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def visitor(key, *, last_seen_days_ago=0, expires_in_days=90):
    now = timezone.now()
    return Visitor.objects.create(
        key=key,
        first_seen_at=now - timedelta(days=last_seen_days_ago),
        last_seen_at=now - timedelta(days=last_seen_days_ago),
        expires_at=now + timedelta(days=expires_in_days),
    )


def hit(visitor_, category, provider, *, expires_in_days):
    now = timezone.now()
    return VisitorTraitHit.objects.create(
        visitor=visitor_,
        category=category,
        provider=provider,
        observed_at=now,
        expires_at=now + timedelta(days=expires_in_days),
    )


@pytest.fixture
def dmp(db):
    return (
        Category.objects.create(code="travel", name="Travel", kind="interest"),
        Category.objects.create(code="autos", name="Autos", kind="interest"),
        DataProvider.objects.create(name="Provider"),
    )


@pytest.mark.django_db
def test_visitor_data_purge(purposes, dmp):
    travel, autos, provider = dmp
    fresh = visitor("fresh")
    hit(fresh, travel, provider, expires_in_days=10)
    expired_hit = hit(fresh, autos, provider, expires_in_days=-1)
    unseen = visitor("unseen", last_seen_days_ago=91)  # past the 90-day policy
    hit(unseen, travel, provider, expires_in_days=10)
    expired = visitor("expired", expires_in_days=-1)

    purged = retention_purge(category="visitor_data", batch_size=1)

    assert purged == 4  # 1 expired hit, 1 hit of the unseen visitor, 2 visitors
    assert set(Visitor.objects.values_list("key", flat=True)) == {"fresh"}
    assert not VisitorTraitHit.objects.filter(pk=expired_hit.pk).exists()
    assert fresh.trait_hits.count() == 1
    assert not Visitor.objects.filter(pk__in=[unseen.pk, expired.pk]).exists()
    policy = RetentionPolicy.objects.get(category="visitor_data")
    assert policy.last_purged_count == 4 and policy.last_run_at is not None


@pytest.mark.django_db
def test_raw_events_purge_keeps_recent_events(purposes):
    old = EventFactory(timestamp=timezone.now() - timedelta(days=731))
    recent = EventFactory(timestamp=timezone.now() - timedelta(days=10))
    assert retention_purge(category="raw_events") == 1
    assert list(Event.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Event.objects.filter(pk=old.pk).exists()


@pytest.mark.django_db
def test_exports_purge_removes_old_request_files(purposes, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    IdentityFactory(kind="email", value="lotte@example.org")
    request = dsar_create(kind="access", email="lotte@example.org")
    dsar_verify(request=request)
    dsar_process(request=request)
    path = request.result_file.path
    assert retention_purge(category="exports") == 0  # completed today: kept
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        completed_at=timezone.now() - timedelta(days=31)
    )
    assert retention_purge(category="exports") == 1
    request.refresh_from_db()
    assert not request.result_file and not os.path.exists(path)
    assert request.status == "completed"  # the request itself stays as proof


@pytest.mark.django_db
def test_inactive_policy_purges_nothing_and_unknown_category_is_an_error(purposes):
    EventFactory(timestamp=timezone.now() - timedelta(days=800))
    RetentionPolicy.objects.filter(category="raw_events").update(is_active=False)
    assert retention_purge(category="raw_events") == 0
    assert Event.objects.count() == 1
    with pytest.raises(ConsentError, match="no retention policy"):
        retention_purge(category="cookies")


@pytest.mark.django_db
def test_run_all_reports_every_active_category(purposes):
    counts = retention_run_all()
    assert set(counts) == {
        "visitor_data",
        "raw_events",
        "rejected_messages",
        "import_files",
        "exports",
        "deliveries",
    }
    assert RetentionPolicy.objects.filter(last_run_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_delete_in_batches_deletes_everything_matching(purposes):
    for _ in range(7):
        EventFactory(name="Batch")
    EventFactory(name="Keep")
    assert delete_in_batches(Event.objects.filter(name="Batch"), batch_size=3) == 7
    assert list(Event.objects.values_list("name", flat=True)) == ["Keep"]


@pytest.mark.django_db
def test_admin_purge_now_action(admin_client, purposes, django_capture_on_commit_callbacks):
    EventFactory(timestamp=timezone.now() - timedelta(days=800))
    policy = RetentionPolicy.objects.get(category="raw_events")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/consent/retentionpolicy/",
            {"action": "purge_now", "_selected_action": [policy.pk]},
        )
    policy.refresh_from_db()
    assert policy.last_purged_count == 1
    assert not Event.objects.exists()


def test_beat_schedule_names_the_purge_task():
    from django.conf import settings

    from cdphub.celery import app
    from consent.tasks import purge_expired_data_task

    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-data"]
    assert entry["task"] == purge_expired_data_task.name
    app.loader.import_default_modules()
    assert purge_expired_data_task.name in app.tasks


def redis_or_skip() -> None:
    """Skip without Redis on a developer machine; on CI (CI=true) a missing broker fails."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as error:
        reason = f"Redis is not reachable at {REDIS_URL} ({error})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the broker tests")
        pytest.skip(reason)


@pytest.fixture
def broker_app():
    """A Celery app on Redis (not eager), with a queue of its own so no other worker on the
    same Redis database takes the task. A test worker makes its app the process's current
    one: the project's is put back after, or every later test's task would go to Redis."""
    from celery import Celery

    from cdphub.celery import app as project_app

    redis_or_skip()
    app = Celery("cdphub-broker-test", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(
        broker_url=REDIS_URL,
        task_always_eager=False,
        task_default_queue=f"cdphub-test-{uuid.uuid4().hex}",
        broker_connection_retry_on_startup=False,
    )
    app.autodiscover_tasks(["consent"], force=True)
    yield app
    project_app.set_current()
    project_app.set_default()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_purge_task_runs_on_a_real_worker(broker_app, purposes):
    from celery import signals
    from celery.contrib.testing.worker import start_worker
    from django.db import connections

    def close_worker_connections(**kwargs):
        connections.close_all()  # the worker thread's own connection, before the test db goes

    signals.task_postrun.connect(close_worker_connections, weak=False)
    old = EventFactory(timestamp=timezone.now() - timedelta(days=800))
    try:
        with start_worker(broker_app, pool="solo", perform_ping_check=False):
            broker_app.send_task("consent.tasks.purge_expired_data_task")
            policy = wait_for_run("raw_events")
    finally:
        signals.task_postrun.disconnect(close_worker_connections)
    assert policy.last_purged_count == 1
    assert not Event.objects.filter(pk=old.pk).exists()


def wait_for_run(category: str, attempts: int = 300) -> RetentionPolicy:
    """The worker runs the task in its own thread and transaction: poll until it recorded."""
    for _ in range(attempts):
        policy = RetentionPolicy.objects.get(category=category)
        if policy.last_run_at is not None:
            return policy
        time.sleep(0.1)
    raise AssertionError(f"the worker did not purge {category} within {attempts / 10:.0f} s")


def test_every_retention_category_has_a_purger():
    from consent.retention import purgers

    assert [c for c in RetentionPolicy.Category.values if not purgers(c)] == []


@pytest.mark.django_db
def test_deliveries_done_with_are_purged_and_waiting_or_dead_ones_kept(purposes, settings):
    from cdphub.models import Delivery, DeliveryAttempt
    from profiles.destinations.services import destination_create

    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    destination, _ = destination_create(
        name="Partner",
        kind="webhook",
        config={"url": "http://127.0.0.1:9/"},
        purpose_code="analytics",
    )
    rows = {
        status: Delivery.objects.create(destination=destination, payload={}, status=status)
        for status in ("delivered", "skipped", "pending", "dead")
    }
    attempt = DeliveryAttempt.objects.create(
        destination=destination, batch_key="k", items=1, outcome="delivered", latency_ms=3
    )
    old = timezone.now() - timedelta(days=15)  # past the 14-day policy
    Delivery.objects.update(created_at=old)
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(created_at=old)
    fresh = Delivery.objects.create(destination=destination, payload={}, status="delivered")

    assert retention_purge(category="deliveries") == 3
    assert set(Delivery.objects.values_list("pk", flat=True)) == {
        rows["pending"].pk,
        rows["dead"].pk,
        fresh.pk,
    }
    assert not DeliveryAttempt.objects.exists()
