"""Erasure reaches the destinations: an erasure request sends every destination that can delete
one deletion naming the person by profile ids and hashed identifiers (never in clear), retried
like any delivery, each answer written on the request's log; a kind that cannot delete is named
on the log to be done by hand."""

from __future__ import annotations

import hashlib

import pytest

from cdphub.delivery import deliveries_send
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.models import DataSubjectRequestAction
from profiles.destinations.services import destination_create
from profiles.models import Identity
from profiles.services import source_create
from tests.cdphub.test_delivery import Answer, ScriptedReceiver, collect

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(delivery_engine):
    return source_create(name="Web shop")[0]


def erase(**subject):
    request = dsar_create(kind="erasure", **subject)
    dsar_verify(request=request)
    return dsar_process(request=request)


def answers(request) -> list[str]:
    return list(
        DataSubjectRequestAction.objects.filter(request=request, action="destination_answer")
        .order_by("id")
        .values_list("note", flat=True)
    )


def test_every_destination_that_can_delete_is_told_and_each_answer_is_logged(source):
    with ScriptedReceiver(Answer(), Answer(status=503)) as receiver:
        webhook, _ = destination_create(
            name="Partner webhook",
            kind="webhook",
            config={"url": receiver.url},
            purpose_code="analytics",
        )
        destination_create(
            name="Warehouse forward",
            kind="segment_forward",
            config={"url": "http://127.0.0.1:9", "write_key": "wk"},
            purpose_code="analytics",
        )
        collect(source, "Product Viewed", user="u-erased")
        profile_id = Identity.objects.get(value="u-erased").profile_id
        deliveries_send()  # the event reaches the webhook (the forward's receiver is down)
        assert len(receiver.requests) == 1

        request = erase(user_id="u-erased")
        completed = request.actions.get(action="completed").note
        assert "deletion queued for destinations: Partner webhook" in completed
        assert "delete the person by hand in (their kind cannot be told): Warehouse forward" in (
            completed
        )

        deliveries_send()  # 503: retried
        deliveries_send()  # then delivered

    deletions = [batch for batch in receiver.batches if batch[0]["type"] == "delete"]
    assert len(deletions) == 2  # the same deletion, sent again after the 503
    [item] = deletions[-1]
    assert item["profileIds"] == [profile_id]
    assert item["erasureRequest"] == request.pk
    assert item["identifiers"]["user_id_sha256"] == [hashlib.sha256(b"u-erased").hexdigest()]
    assert "u-erased" not in receiver.requests[-1]["body"].decode()  # no identifier in clear
    assert receiver.keys[-1] == receiver.keys[-2]  # one idempotency key for both attempts
    assert answers(request) == [
        "destination Partner webhook: not yet: retried later, answered 503",
        "destination Partner webhook: deleted, answered 200",
    ]
    assert webhook.deliveries.get(payload__type="delete").status == "delivered"


def test_a_person_without_profiles_sends_no_deletion(source):
    with ScriptedReceiver() as receiver:
        destination_create(
            name="Partner webhook",
            kind="webhook",
            config={"url": receiver.url},
            purpose_code="analytics",
        )
        request = erase(email="nobody@example.com")
        deliveries_send()
    assert receiver.requests == []
    assert answers(request) == []
