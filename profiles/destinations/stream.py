"""Event streams: every processed message a destination receives becomes one outbox row,
inside the processing transaction (a processing hook), with the resolved profile id; a replay
queues stored events of a time range again the same way. Consent is not asked here but when
the row is sent: it may change while the row waits."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from cdphub.audit import audit_record
from cdphub.delivery import OutboxRow, outbox_add
from profiles.destinations.services import destination_pause
from profiles.ingest.hooks import ProcessedMessage
from profiles.ingest.processing import first_line
from profiles.models import Destination, Event
from profiles.segments.rules import rule_queryset

logger = logging.getLogger(__name__)


def message_name(message: ProcessedMessage) -> str:
    payload = message.payload
    return str(payload.get("event") or payload.get("name") or "")


def events_to_outbox(messages: Sequence[ProcessedMessage]) -> int:
    """The processing hook; returns how many outbox rows it wrote. Paused destinations
    receive too: what they miss waits for their resume."""
    if not messages:
        return 0
    destinations = list(
        Destination.objects.filter(receiving=Destination.Receiving.EVENTS).only(
            "pk", "name", "receiving", "source_id", "event_types", "event_names", "profile_rule"
        )
    )
    rows = []
    for destination in destinations:
        passing = [
            message
            for message in messages
            if destination.receives(
                source_id=message.source_id, message_type=message.type, name=message_name(message)
            )
        ]
        if passing and destination.profile_rule:
            passing = _selected_by_rule(destination, passing)
        rows.extend(OutboxRow(destination.pk, m.profile, m.payload) for m in passing)
    return outbox_add(rows)


def _selected_by_rule(
    destination: Destination, messages: list[ProcessedMessage]
) -> list[ProcessedMessage]:
    """The messages whose person the destination's profile rule selects, on their profile as
    it is now, in the processing transaction (traits just applied; computed traits and
    segments as of their last refresh). A rule that fails (a segment it names was deleted)
    must not fail processing: the destination is paused with the reason and receives none of
    these; once the rule is fixed, a replay sends them."""
    profile_ids = sorted({message.profile for message in messages})
    try:
        with transaction.atomic():
            selected = set(
                rule_queryset(destination.profile_rule, profile_ids=profile_ids).values_list(
                    "pk", flat=True
                )
            )
    except Exception as error:  # any failure of the rule: reported on the destination
        logger.exception("profile rule of destination %s failed", destination.pk)
        destination_pause(
            destination=destination,
            reason=f"its profile rule failed ({first_line(error)}): fix it, resume it and "
            "replay the time since",
        )
        return []
    return [message for message in messages if message.profile in selected]


def event_message(event: Event) -> dict:
    """A stored event as the message it came from, for a replay: the same ``messageId``, so a
    receiver that has it already can drop it."""
    message = {
        "type": event.type,
        "messageId": event.message_id,
        "timestamp": event.timestamp.isoformat(),
        "context": event.context,
    }
    if event.user_id:
        message["userId"] = event.user_id
    if event.anonymous_id:
        message["anonymousId"] = event.anonymous_id
    if event.type == Event.Type.TRACK:
        message.update(event=event.name, properties=event.properties)
    elif event.type in (Event.Type.PAGE, Event.Type.SCREEN):
        message.update(name=event.name, properties=event.properties)
    elif event.type == Event.Type.IDENTIFY:
        message["traits"] = event.properties
    elif event.type == Event.Type.GROUP:
        message.update(groupId=event.name, traits=event.properties)
    elif event.type == Event.Type.ALIAS:
        message["previousId"] = event.properties.get("previousId")
    return message


REPLAY_CHUNK = 5000


def replay_events(destination: Destination, since, until):
    """The stored events of [since, until) this destination receives, oldest first."""
    events = Event.objects.filter(timestamp__gte=since, timestamp__lt=until)
    if destination.source_id is not None:
        events = events.filter(source_id=destination.source_id)
    if destination.event_types:
        events = events.filter(type__in=destination.event_types)
    if destination.event_names:
        events = events.filter(name__in=destination.event_names)
    if destination.profile_rule:
        # The people the rule selects now (their profiles as they are, not as they were).
        events = events.filter(profile__in=rule_queryset(destination.profile_rule).values("pk"))
    return events.order_by("timestamp", "id")


def destination_replay(*, destination: Destination, since, until, actor=None) -> int:
    """Send the destination again the events of [since, until) it receives (a backfill of a
    new tool, or what an outage lost): queued in the outbox in order, a chunk per transaction,
    consent checked when they are sent as for any delivery. Refused, changing nothing, for an
    empty range or one of more than CDPHUB_REPLAY_MAX_EVENTS events (replay it in parts).
    Returns how many were queued."""
    if since >= until:
        raise ValidationError({"until": "must be after since"})
    events = replay_events(destination, since, until)
    limit = settings.CDPHUB_REPLAY_MAX_EVENTS
    if events[limit : limit + 1].exists():
        raise ValidationError(
            {"until": f"more than {limit} events in this range: replay it in parts"}
        )
    audit_record(
        actor=actor,
        action="destination.replay",
        obj=destination,
        note=f"events from {since.isoformat()} to {until.isoformat()}",
    )
    queued, after = 0, None
    while True:
        chunk = events
        if after is not None:
            chunk = chunk.filter(Q(timestamp__gt=after[0]) | Q(timestamp=after[0], id__gt=after[1]))
        chunk = list(chunk[:REPLAY_CHUNK])
        if not chunk:
            return queued
        with transaction.atomic():
            queued += outbox_add(
                OutboxRow(destination.pk, event.profile_id, event_message(event)) for event in chunk
            )
        after = (chunk[-1].timestamp, chunk[-1].id)
