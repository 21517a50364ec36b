"""Two consent facts for the same person and purpose at once: one state row, the newest wins."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from consent.models import ConsentRecord, ConsentState
from consent.services import consent_record
from tests.factories import ProfileFactory


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_facts_leave_one_state_with_the_newest(purposes):
    profile = ProfileFactory()
    now = timezone.now()
    barrier = threading.Barrier(8)
    errors = []

    def record(offset_seconds: int, status: str):
        try:
            barrier.wait()
            consent_record(
                profile=profile,
                purpose="email_marketing",
                status=status,
                method="api",
                occurred_at=now - timedelta(seconds=offset_seconds),
            )
        except Exception as error:  # reported below; a thread's exception is otherwise lost
            errors.append(error)
        finally:
            connections.close_all()

    # The newest fact (offset 0) is a withdrawal; seven older grants race against it.
    threads = [threading.Thread(target=record, args=(i, "granted")) for i in range(1, 8)]
    threads.append(threading.Thread(target=record, args=(0, "withdrawn")))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert ConsentRecord.objects.filter(profile=profile).count() == 8
    state = ConsentState.objects.get(profile=profile)
    assert state.status == "withdrawn"
    assert state.record.occurred_at == now
