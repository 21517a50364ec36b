"""Audience syncs: a destination that receives a group's members instead of events. The
group is a segment (profiles, below) or a DMP audience (visitors, ``audiences.syncs``), each
behind the small ``SyncedGroup`` interface, so the rules below are written once.

1. The initial load: every member the destination's purpose allows, as "Audience Entered",
   queued once (``sync_loaded_at``).
2. Then the changes the group's membership history records, in order and each once: the
   destination keeps the id of the last change it queued (``synced_change_id``), advanced in
   the transaction that writes their outbox rows, so a crash neither loses nor repeats one.
   The whole list is never sent again.
3. Both hold the group's refresh lock (tried, never waited for: a refresh holding it tells
   the syncs again when it commits), so no change can commit later with a smaller id than one
   already read, and the load's members and its mark describe the same moment.
4. Consent: an entry is sent only if the person has the destination's purpose when it is due
   (as any delivery); an exit is sent whatever their consent, it takes data away. A person who
   withdraws the purpose is removed from every audience synced for it at once, and added back
   on a new grant while still a member (``consent_follow``, a consent listener; the DMP's own
   for visitors).
5. Size: while the group has fewer members than CDPHUB_MIN_AUDIENCE_SIZE it is not loaded
   and no one is added (entries wait) and the destination says why: an ad platform must not
   learn who the few are. Exits still go, up to the first entry waiting.

Items follow the convention of audiences sent to event destinations (Segment's Engage): a track
"Audience Entered" / "Audience Exited" with ``audience_key`` (and the key itself as a true or
false property), the person's ``userId``, their e-mail and phone in ``context.traits`` (what an
ad platform or an e-mail tool matches on), and a ``messageId`` that every resend repeats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdphub.delivery import OutboxRow, outbox_add
from cdphub.models import Delivery
from cdphub.sql import query
from consent.selectors import profile_has_consent
from profiles.destinations.kinds import AUDIENCE_ENTERED, AUDIENCE_EXITED
from profiles.models import Destination, Segment, SegmentMembershipChange
from profiles.segments.exports import channel_identifiers
from profiles.segments.membership import REFRESH_LOCK, members_for_purpose

ENTERED = AUDIENCE_ENTERED
EXITED = AUDIENCE_EXITED
CHUNK = 5000


@dataclass(frozen=True)
class Change:
    """One entry to or exit from a group, to be sent: ``member`` is what the group's items
    name (a profile id; a visitor), ``message_id`` what every resend repeats."""

    member: object
    entered: bool
    message_id: str
    at: datetime


class SyncedGroup(Protocol):
    """What an audience sync reads of the group it keeps in step with."""

    # What the destination calls it when it waits: "segment", "audience".
    noun: str
    # Its members now, and the prefix of its items' message ids.
    size: int
    message_prefix: str

    def try_lock(self) -> bool:
        """Take the lock every writer of its memberships holds, in the transaction, if free."""

    def last_change_id(self) -> int:
        """The id of its latest membership change (0 for none)."""

    def members(self, purpose_code: str) -> list:
        """Its members whose entry may be sent for the purpose now, in a stable order."""

    def changes(self, after: int, limit: int) -> list[tuple[int, object, bool, datetime]]:
        """Up to ``limit`` membership changes after the id, in order: (id, member, entered, at)."""

    def rows(self, destination: Destination, changes: list[Change]) -> list[OutboxRow]:
        """The outbox rows of these changes, in their order."""


# Destination.receiving -> the group a sync of that kind follows (None: none yet).
_groups: dict[str, Callable[[Destination], SyncedGroup | None]] = {}


def register_group(receiving: str, group_of: Callable[[Destination], SyncedGroup | None]) -> None:
    _groups[receiving] = group_of


def group_of(destination: Destination) -> SyncedGroup | None:
    finder = _groups.get(destination.receiving)
    return finder(destination) if finder else None


def sync_item(
    destination: Destination, group: dict, change: Change, identity: dict | None = None
) -> dict:
    """An "Audience Entered"/"Audience Exited" track item of a group (its ``id`` and
    ``name``); ``identity`` adds who it names (userId, anonymousId, context)."""
    key = destination.audience_key
    event = ENTERED if change.entered else EXITED
    return {
        "type": "track",
        "event": event,
        "messageId": change.message_id,
        "timestamp": change.at.isoformat(),
        "properties": {
            "audience_key": key,
            "audience_id": group["id"],
            "audience_name": group["name"],
            key: change.entered,
        },
        **(identity or {}),
    }


# --- A segment's members ------------------------------------------------------------------------


class SegmentGroup:
    noun = "segment"

    def __init__(self, segment: Segment):
        self.segment = segment
        self.size = segment.size
        self.message_prefix = f"audience-{segment.pk}"

    def try_lock(self) -> bool:
        """The lock every writer of the segment's memberships holds (membership.refresh_lock)."""
        [(locked,)] = query(
            "SELECT pg_try_advisory_xact_lock(%b::int, %b::int)", [REFRESH_LOCK, self.segment.pk]
        )
        return locked

    def last_change_id(self) -> int:
        changes = SegmentMembershipChange.objects.filter(segment=self.segment).order_by("-id")
        return changes.values_list("id", flat=True).first() or 0

    def members(self, purpose_code: str) -> list[int]:
        members = members_for_purpose(self.segment, purpose_code)
        return list(members.order_by("pk").values_list("pk", flat=True))

    def changes(self, after: int, limit: int) -> list[tuple[int, int, bool, datetime]]:
        changes = SegmentMembershipChange.objects.filter(segment=self.segment, id__gt=after)
        return [
            (pk, profile_id, kind == SegmentMembershipChange.Kind.ENTERED, at)
            for pk, profile_id, kind, at in changes.order_by("id").values_list(
                "id", "profile_id", "kind", "changed_at"
            )[:limit]
        ]

    def rows(self, destination: Destination, changes: list[Change]) -> list[OutboxRow]:
        identifiers = channel_identifiers({change.member for change in changes})
        group = {"id": self.segment.pk, "name": self.segment.name}
        return [
            OutboxRow(
                destination.pk,
                change.member,
                sync_item(destination, group, change, person_identity(identifiers[change.member])),
                requires_consent=change.entered,
            )
            for change in changes
        ]


def person_identity(identifiers: dict[str, str]) -> dict:
    """Who an item names: the person's userId, and their e-mail and phone in the context."""
    identity = {
        "context": {
            "traits": {k: identifiers[k] for k in ("email", "phone") if k in identifiers},
        }
    }
    if "user_id" in identifiers:
        identity["userId"] = identifiers["user_id"]
    return identity


register_group(
    Destination.Receiving.SEGMENT,
    lambda destination: SegmentGroup(destination.segment) if destination.segment_id else None,
)


# --- Queueing, for every kind of group ----------------------------------------------------------


def audience_sync_queue(destination_id: int) -> int:
    """Queue what the audience sync has not sent yet: the initial load, or the membership
    changes since the last ones queued, a chunk per transaction. Returns how many rows were
    queued; 0 when the group is being refreshed (its commit calls again), or under the
    minimum size before its load (the destination says so)."""
    queued = 0
    while True:
        with transaction.atomic():
            destination = (
                Destination.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("segment")
                .filter(pk=destination_id)
                .exclude(receiving=Destination.Receiving.EVENTS)
                .first()
            )
            group = group_of(destination) if destination is not None else None
            if group is None or not group.try_lock():
                return queued
            large_enough = _size_allows(destination, group)
            if destination.sync_loaded_at is None:
                return queued + (_load(destination, group) if large_enough else 0)
            done = _changes(destination, group, exits_only=not large_enough)
        if not done:
            return queued
        queued += done


def _size_allows(destination: Destination, group: SyncedGroup) -> bool:
    """Whether the group is large enough to be sent; says on the destination why not. Read
    under the group's lock: its size is that of the members about to be read."""
    minimum = settings.CDPHUB_MIN_AUDIENCE_SIZE
    reason = ""
    if group.size < minimum:
        reason = (
            f"waiting: the {group.noun} has {group.size} members, fewer than the minimum "
            f"audience size ({minimum}); nothing is sent until it has more"
        )
    if reason != destination.sync_waiting_reason:
        Destination.objects.filter(pk=destination.pk).update(sync_waiting_reason=reason)
    return not reason


def _load(destination: Destination, group: SyncedGroup) -> int:
    """Every member allowed now, and the mark after the last change: one moment, under the
    group's lock. Members without consent are not queued (a later grant adds them)."""
    now = timezone.now()
    mark = group.last_change_id()
    members = group.members(destination.purpose_code)
    load = f"{group.message_prefix}-load-{destination.pk}"
    queued = 0
    for start in range(0, len(members), CHUNK):
        chunk = members[start : start + CHUNK]
        queued += outbox_add(
            group.rows(
                destination, [Change(m, True, f"{load}-{_member_key(m)}", now) for m in chunk]
            )
        )
    Destination.objects.filter(pk=destination.pk).update(
        sync_loaded_at=now, synced_change_id=mark, updated_at=now
    )
    return queued


def _member_key(member) -> object:
    return getattr(member, "pk", member)


def _changes(destination: Destination, group: SyncedGroup, *, exits_only: bool = False) -> int:
    """Queue the next chunk of changes; ``exits_only`` (a group under the minimum size): the
    exits up to the first entry, which waits with everything behind it (an exit behind it may
    be the same member's, and must not pass it)."""
    changes = group.changes(destination.synced_change_id, CHUNK)
    if exits_only:
        entries = [i for i, (_, _, entered, _) in enumerate(changes) if entered]
        changes = changes[: entries[0]] if entries else changes
    if not changes:
        return 0
    queued = outbox_add(
        group.rows(
            destination,
            [
                Change(member, entered, f"{group.message_prefix}-{pk}", at)
                for pk, member, entered, at in changes
            ],
        )
    )
    Destination.objects.filter(pk=destination.pk).update(synced_change_id=changes[-1][0])
    return queued


def audience_syncs_queue(segment_id: int | None = None) -> int:
    """Queue what every audience sync (of one segment) has not sent yet; the sender is queued
    after each commit. Runs after a segment's members change and with every scheduled send,
    which catches up on anything a crash between a refresh and its notice left behind."""
    syncs = Destination.objects.exclude(receiving=Destination.Receiving.EVENTS)
    if segment_id is not None:
        syncs = syncs.filter(segment_id=segment_id)
    return sum(audience_sync_queue(pk) for pk in syncs.values_list("pk", flat=True))


# --- Consent -------------------------------------------------------------------------------------


def consent_follow(profile_id: int, purpose_code: str) -> None:
    """A consent listener: when a person's consent to a purpose changes, every loaded segment
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
        group = SegmentGroup(destination.segment)
        message_id = f"{group.message_prefix}-consent-{profile_id}-{now.timestamp()}"
        outbox_add(group.rows(destination, [Change(profile_id, allowed, message_id, now)]))


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
