"""How collection hands messages to processing, in each CDPHUB_INGEST_PROCESSING mode."""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from cdphub.background import BackgroundThread, Throttle
from profiles.ingest import collect, processing
from profiles.ingest.collect import messages_collect
from profiles.models import Event, PendingMessage
from profiles.tasks import process_pending_task
from tests.factories import SourceFactory

MESSAGE = {"type": "track", "userId": "u-1", "event": "E"}


@pytest.mark.django_db
def test_inline_processes_after_commit(settings, django_capture_on_commit_callbacks):
    settings.CDPHUB_INGEST_PROCESSING = "inline"
    source = SourceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        messages_collect(source_id=source.pk, messages=[dict(MESSAGE)])
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_celery_mode_queues_one_task_per_interval(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.CDPHUB_INGEST_PROCESSING = "celery"
    monkeypatch.setattr(collect, "_task_throttle", Throttle())
    queued = []
    monkeypatch.setattr(process_pending_task, "delay", lambda: queued.append(1))
    source = SourceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        messages_collect(source_id=source.pk, messages=[dict(MESSAGE, messageId="1")])
        messages_collect(source_id=source.pk, messages=[dict(MESSAGE, messageId="2")])
    # One task drains everything waiting; the second request, within the same second, relies
    # on it (or on the beat schedule's safety net).
    assert queued == [1]
    assert PendingMessage.objects.count() == 2


@pytest.mark.django_db
def test_the_task_processes_everything_waiting():
    source = SourceFactory()
    PendingMessage.objects.bulk_create(
        [
            PendingMessage(
                source=source,
                message_id=str(i),
                type="track",
                payload=dict(MESSAGE),
                timestamp=timezone.now(),
                received_at=timezone.now(),
            )
            for i in range(3)
        ]
    )
    assert process_pending_task.apply().get() == 3
    assert Event.objects.count() == 3


@pytest.mark.django_db
def test_off_only_stages(settings, django_capture_on_commit_callbacks):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    source = SourceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        messages_collect(source_id=source.pk, messages=[dict(MESSAGE)])
    assert PendingMessage.objects.count() == 1
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_background_mode_drains_in_a_thread_without_blocking(settings, monkeypatch):
    settings.CDPHUB_INGEST_PROCESSING = "background"
    drained = threading.Event()
    real = processing.pending_process

    def process_and_signal(**kwargs):
        done = real(**kwargs)
        if done:
            drained.set()
        return done

    monkeypatch.setattr(processing, "pending_process", process_and_signal)
    # A thread of its own: none started by an earlier test.
    drainer = BackgroundThread("pending-drainer", collect._process_pending, failure="failed")
    monkeypatch.setattr(collect, "_drainer", drainer)
    source = SourceFactory()
    messages_collect(source_id=source.pk, messages=[dict(MESSAGE)])
    assert drained.wait(timeout=60), "the background thread did not process the message"
    assert Event.objects.count() == 1
    assert not PendingMessage.objects.exists()
