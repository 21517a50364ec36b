"""Event streams: every processed message a destination receives becomes one outbox row,
inside the processing transaction (a processing hook), with the resolved profile id. Consent
is not asked here but when the row is sent: it may change while the row waits."""

from __future__ import annotations

from collections.abc import Sequence

from cdphub.delivery import outbox_add
from profiles.ingest.hooks import ProcessedMessage
from profiles.models import Destination


def message_name(message: ProcessedMessage) -> str:
    payload = message.payload
    return str(payload.get("event") or payload.get("name") or "")


def events_to_outbox(messages: Sequence[ProcessedMessage]) -> int:
    """The processing hook; returns how many outbox rows it wrote. Paused destinations
    receive too: what they miss waits for their resume."""
    if not messages:
        return 0
    destinations = list(Destination.objects.only("pk", "source_id", "event_types", "event_names"))
    if not destinations:
        return 0
    rows = [
        (destination.pk, message.profile, message.payload)
        for message in messages
        for destination in destinations
        if destination.receives(
            source_id=message.source_id, message_type=message.type, name=message_name(message)
        )
    ]
    return outbox_add(rows)
