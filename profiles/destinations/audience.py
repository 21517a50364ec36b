"""Audience syncs: a destination that receives a segment's members instead of events.

1. The initial load: every member the destination's purpose allows, as "Audience Entered",
   queued once (``sync_loaded_at``).
2. Then the changes the membership history records (``SegmentMembershipChange``), in order and
   each once: the destination keeps the id of the last change it queued (``synced_change_id``),
   advanced in the transaction that writes their outbox rows, so a crash neither loses nor
   repeats one. The whole list is never sent again.
3. Both hold the segment's refresh lock (tried, never waited for: a refresh holding it tells
   the syncs again when it commits), so no change can commit later with a smaller id than one
   already read, and the load's members and its mark describe the same moment.
4. Consent: an entry is sent only if the person has the destination's purpose when it is due
   (as any delivery); an exit is sent whatever their consent, it takes data away. A person who
   withdraws the purpose is removed from every audience synced for it at once, and added back
   on a new grant while still a member (``consent_follow``, a consent listener).
5. Size: while the segment has fewer members than CDPHUB_MIN_AUDIENCE_SIZE it is not loaded
   and no one is added (entries wait) and the destination says why: an ad platform must not
   learn who the few are. Exits still go, up to the first entry waiting.

Items follow the convention of audiences sent to event destinations (Segment's Engage): a track
"Audience Entered" / "Audience Exited" with ``audience_key`` (and the key itself as a true or
false property), the person's ``userId``, their e-mail and phone in ``context.traits`` (what an
ad platform or an e-mail tool matches on), and a ``messageId`` that every resend repeats."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdphub.delivery import OutboxRow, outbox_add
from cdphub.models import Delivery
from cdphub.sql import query
from consent.selectors import profile_has_consent
from profiles.destinations.kinds import AUDIENCE_ENTERED, AUDIENCE_EXITED
from profiles.destinations.services import audience_key
from profiles.models import Destination, SegmentMembershipChange
from profiles.segments.exports import channel_identifiers
from profiles.segments.membership import REFRESH_LOCK, members_for_purpose

ENTERED = AUDIENCE_ENTERED
EXITED = AUDIENCE_EXITED
CHUNK = 5000


def audience_item(
    destination: Destination,
    event: str,
    identifiers: dict[str, str],
    message_id: str,
    at: datetime,
) -> dict:
    segment = destination.segment
    key = destination.audience_key or audience_key(segment)
    item = {
        "type": "track",
        "event": event,
        "messageId": message_id,
        "timestamp": at.isoformat(),
        "properties": {
            "audience_key": key,
            "audience_id": segment.pk,
            "audience_name": segment.name,
            key: event == ENTERED,
        },
        "context": {
            "traits": {k: identifiers[k] for k in ("email", "phone") if k in identifiers},
        },
    }
    if "user_id" in identifiers:
        item["userId"] = identifiers["user_id"]
    return item


def _rows(
    destination: Destination, changes: Iterable[tuple[int, str, str, datetime]]
) -> list[OutboxRow]:
    """Outbox rows of (profile id, event, message id, time) changes, in their order."""
    changes = list(changes)
    identifiers = channel_identifiers({profile_id for profile_id, *_ in changes})
    return [
        OutboxRow(
            destination.pk,
            profile_id,
            audience_item(destination, event, identifiers[profile_id], message_id, at),
            requires_consent=event == ENTERED,
        )
        for profile_id, event, message_id, at in changes
    ]


def _segment_try_lock(segment_id: int) -> bool:
    """The lock every writer of the segment's memberships holds (membership.refresh_lock)."""
    [(locked,)] = query(
        "SELECT pg_try_advisory_xact_lock(%b::int, %b::int)", [REFRESH_LOCK, segment_id]
    )
    return locked


def audience_sync_queue(destination_id: int) -> int:
    """Queue what the audience sync has not sent yet: the initial load, or the membership
    changes since the last ones queued, a chunk per transaction. Returns how many rows were
    queued; 0 when the segment is being refreshed (its commit calls again), or under the
    minimum size before its load (the destination says so)."""
    queued = 0
    while True:
        with transaction.atomic():
            destination = (
                Destination.objects.select_for_update(skip_locked=True)
                .select_related("segment")
                .filter(pk=destination_id)
                .exclude(segment=None)
                .first()
            )
            if destination is None or not _segment_try_lock(destination.segment_id):
                return queued
            large_enough = _size_allows(destination)
            if destination.sync_loaded_at is None:
                return queued + (_load(destination) if large_enough else 0)
            done = _changes(destination, exits_only=not large_enough)
        if not done:
            return queued
        queued += done


def _size_allows(destination: Destination) -> bool:
    """Whether the segment is large enough to be sent; says on the destination why not.
    Read under the segment's lock: its size is that of the members about to be read."""
    segment = destination.segment
    minimum = settings.CDPHUB_MIN_AUDIENCE_SIZE
    reason = ""
    if segment.size < minimum:
        reason = (
            f"waiting: the segment has {segment.size} members, fewer than the minimum "
            f"audience size ({minimum}); nothing is sent until it has more"
        )
    if reason != destination.sync_waiting_reason:
        Destination.objects.filter(pk=destination.pk).update(sync_waiting_reason=reason)
    return not reason


def _load(destination: Destination) -> int:
    """Every member allowed now, and the mark after the last change: one moment, under the
    segment's lock. Members without consent are not queued (a later grant adds them)."""
    now = timezone.now()
    mark = (
        SegmentMembershipChange.objects.filter(segment_id=destination.segment_id)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    ) or 0
    members = (
        members_for_purpose(destination.segment, destination.purpose_code)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    queued = 0
    load = f"audience-{destination.segment_id}-load-{destination.pk}"
    ids = list(members)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        queued += outbox_add(
            _rows(destination, ((pk, ENTERED, f"{load}-{pk}", now) for pk in chunk))
        )
    Destination.objects.filter(pk=destination.pk).update(
        sync_loaded_at=now, synced_change_id=mark, updated_at=now
    )
    return queued


def _changes(destination: Destination, *, exits_only: bool = False) -> int:
    """Queue the next chunk of changes; ``exits_only`` (a segment under the minimum size):
    the exits up to the first entry, which waits with everything behind it (an exit behind it
    may be the same person's, and must not pass it)."""
    changes = list(
        SegmentMembershipChange.objects.filter(
            segment_id=destination.segment_id, id__gt=destination.synced_change_id
        )
        .order_by("id")
        .values_list("id", "profile_id", "kind", "changed_at")[:CHUNK]
    )
    if exits_only:
        entries = [i for i, c in enumerate(changes) if c[2] == SegmentMembershipChange.Kind.ENTERED]
        changes = changes[: entries[0]] if entries else changes
    if not changes:
        return 0
    event = {
        SegmentMembershipChange.Kind.ENTERED: ENTERED,
        SegmentMembershipChange.Kind.EXITED: EXITED,
    }
    queued = outbox_add(
        _rows(
            destination,
            (
                (profile_id, event[kind], f"audience-{destination.segment_id}-{pk}", at)
                for pk, profile_id, kind, at in changes
            ),
        )
    )
    Destination.objects.filter(pk=destination.pk).update(synced_change_id=changes[-1][0])
    return queued


def audience_syncs_queue(segment_id: int | None = None) -> int:
    """Queue what every audience sync (of one segment) has not sent yet; the sender is queued
    after each commit. Runs after a segment's members change and with every scheduled send,
    which catches up on anything a crash between a refresh and its notice left behind."""
    syncs = Destination.objects.exclude(segment=None)
    if segment_id is not None:
        syncs = syncs.filter(segment_id=segment_id)
    return sum(audience_sync_queue(pk) for pk in syncs.values_list("pk", flat=True))


def consent_follow(profile_id: int, purpose_code: str) -> None:
    """A consent listener: when a person's consent to a purpose changes, every loaded audience
    synced for that purpose in which they are a member hears it at once: a removal when the
    consent is gone, an entry when it is granted (not again when the last thing queued for
    them already says so). Runs in the transaction of the change."""
    syncs = list(
        Destination.objects.filter(purpose_code=purpose_code)
        .exclude(segment=None)
        .exclude(sync_loaded_at=None)
        .filter(segment__memberships__profile_id=profile_id)
        .select_related("segment")
    )
    if not syncs:
        return
    allowed = profile_has_consent(profile_id, purpose_code)
    event = ENTERED if allowed else EXITED
    now = timezone.now()
    for destination in syncs:
        if _last_event(destination, profile_id) == event:
            continue
        message_id = f"audience-{destination.segment_id}-consent-{profile_id}-{now.timestamp()}"
        outbox_add(_rows(destination, [(profile_id, event, message_id, now)]))


def _last_event(destination: Destination, profile_id: int) -> str | None:
    last = (
        Delivery.objects.filter(destination=destination, profile_id=profile_id)
        .order_by("-id")
        .values_list("payload", flat=True)
        .first()
    )
    return last.get("event") if last else None


def segment_members_changed(segment_id: int) -> None:
    """A segment-change listener (``profiles.segments.changes``), after the change commits."""
    audience_syncs_queue(segment_id)
