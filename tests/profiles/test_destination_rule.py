"""An event stream filtered by a rule on the person: only the events of people the rule selects
(on their profile as the event is processed) reach the destination, over the real processing
path; a bad rule is refused naming where; a rule that fails later pauses the destination instead
of failing processing, and a replay after the fix sends what it missed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cdphub.models import Delivery
from profiles.destinations.services import destination_create, destination_update
from profiles.destinations.stream import destination_replay
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Destination, Event
from profiles.services import source_create

pytestmark = pytest.mark.django_db

PRO = {"trait": "plan", "op": "eq", "value": "pro"}


@pytest.fixture
def source(delivery_engine):
    return source_create(name="Web shop")[0]


def stream(**options):
    return destination_create(
        name="Pro webhook",
        kind="webhook",
        config={"url": "http://127.0.0.1:9/hook"},
        purpose_code="analytics",
        **options,
    )[0]


def send(source, user: str, plan: str) -> None:
    """An identify with the plan, then an order, processed in one batch."""
    messages = [
        {"type": "identify", "userId": user, "traits": {"plan": plan}, "messageId": f"{user}-i"},
        {"type": "track", "userId": user, "event": "Order Completed", "messageId": f"{user}-o"},
    ]
    assert not messages_collect(source_id=source.pk, messages=messages).rejected
    pending_process()


def queued(destination) -> list[tuple[str, str]]:
    rows = Delivery.objects.filter(destination=destination).order_by("id")
    return [(row.payload["userId"], row.payload["type"]) for row in rows]


def test_only_the_events_of_people_the_rule_selects_are_queued(source):
    destination = stream(profile_rule=PRO)
    send(source, "u-pro", "pro")
    send(source, "u-free", "free")
    # The identify in the same batch counts: the rule sees the traits it just set.
    assert queued(destination) == [("u-pro", "identify"), ("u-pro", "track")]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"trait": "plan", "op": "resembles", "value": "pro"}, "op"),
        ({"all": [PRO, {"event": 42}]}, "all[1]"),
    ],
)
def test_a_bad_rule_is_refused_saying_where(source, rule, message):
    with pytest.raises(ValidationError) as refused:
        stream(profile_rule=rule)
    assert message in str(refused.value.message_dict["profile_rule"])
    assert not Destination.objects.exists()


def test_a_rule_that_fails_later_pauses_the_destination_and_a_replay_recovers(source, monkeypatch):
    destination = stream(profile_rule=PRO)

    def broken(*args, **kwargs):
        raise RuntimeError("segment 99 no longer exists")

    monkeypatch.setattr("profiles.destinations.stream.rule_queryset", broken)
    send(source, "u-pro", "pro")
    assert Event.objects.filter(user_id="u-pro").count() == 2  # processing went on
    destination.refresh_from_db()
    assert destination.status == "paused"
    assert "its profile rule failed (segment 99 no longer exists)" in destination.paused_reason
    assert queued(destination) == []

    monkeypatch.undo()
    destination_update(destination=destination, profile_rule=PRO)
    now = timezone.now()
    destination_replay(
        destination=destination, since=now - timedelta(hours=1), until=now + timedelta(minutes=1)
    )
    assert sorted(queued(destination)) == [("u-pro", "identify"), ("u-pro", "track")]
