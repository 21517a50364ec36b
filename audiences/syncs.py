"""Audience syncs of visitors: a destination that receives a DMP audience keeps its visitors in
step with the system it sends to, on the rules every audience sync follows
(``profiles.destinations.audience``: a load, then each entry and exit once, consent, minimum
size); this module is the audience's side of them.

- **Linking.** A destination created to receive a DMP audience is linked to one audience
  (``audience_sync_link``), once: its initial load is queued after the commit.
- **History.** Whatever sets an audience's members records who entered and exited
  (``AudienceMembershipChange``, with the visitor's key, so that a visitor purged at the end of
  its retention still leaves the receiver), under the audience's row lock: the lock the syncs
  try before they read.
- **Items.** A visitor is named by its key: a cookie as ``anonymousId``, a device's advertising
  id as ``context.device.advertisingId`` (what an ad platform matches a device on). A known
  person's e-mail or phone is never added to a visitor's item: one person has several visitors,
  and the exit of one must not take the person out while another stays in (a segment's sync is
  the way to send people).
- **Consent.** A visitor of a known person (linked to them, or keyed by one of their cookie or
  device ids: links exist only under consent) is sent only while the person has the
  destination's purpose (at send time, like every delivery; and the person's consent change
  removes or adds back their visitors at once, ``visitors_consent_follow``). A visitor that is
  no one known is sent like the DMP's files are, under the data providers' basis, kept only
  for its retention.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from audiences.models import Audience, AudienceMembershipChange, AudienceSync, Visitor
from audiences.selectors import person_visitors, visitor_people, visitors_allowed
from cdphub.audit import audit_record
from cdphub.delivery import OutboxRow, outbox_add
from consent.selectors import profile_has_consent
from profiles.destinations.audience import (
    Change,
    audience_sync_queue,
    register_group,
    sync_item,
)
from profiles.models import Destination


class Member(NamedTuple):
    """A visitor as its items name it, and the person it is linked to (None: no one known)."""

    pk: int
    key_kind: str
    key: str
    profile_id: int | None


class AudienceGroup:
    """A DMP audience, as an audience sync reads it."""

    noun = "audience"

    def __init__(self, audience: Audience):
        self.audience = audience
        self.size = audience.size
        self.message_prefix = f"dmp-audience-{audience.pk}"

    def try_lock(self) -> bool:
        """The audience's row, which every writer of its members locks first."""
        return (
            Audience.objects.select_for_update(skip_locked=True)
            .filter(pk=self.audience.pk)
            .exists()
        )

    def last_change_id(self) -> int:
        changes = AudienceMembershipChange.objects.filter(audience=self.audience).order_by("-id")
        return changes.values_list("id", flat=True).first() or 0

    def members(self, purpose_code: str) -> list[Member]:
        members = Visitor.objects.filter(memberships__audience=self.audience)
        visitors = list(
            visitors_allowed(members, purpose_code)
            .order_by("pk")
            .values_list("pk", "key_kind", "key")
        )
        people = visitor_people(visitors)
        return [Member(pk, key_kind, key, people.get(pk)) for pk, key_kind, key in visitors]

    def changes(self, after: int, limit: int) -> list[tuple[int, Member, bool, datetime]]:
        changes = list(
            AudienceMembershipChange.objects.filter(audience=self.audience, id__gt=after)
            .order_by("id")
            .values_list("id", "visitor_id", "key_kind", "key", "kind", "changed_at")[:limit]
        )
        # Whose visitor it is now (a purged visitor: whose key it was).
        people = visitor_people([(visitor, kind, key) for _, visitor, kind, key, _, _ in changes])
        return [
            (pk, Member(visitor, key_kind, key, people.get(visitor)), kind == "entered", at)
            for pk, visitor, key_kind, key, kind, at in changes
        ]

    def rows(self, destination: Destination, changes: list[Change]) -> list[OutboxRow]:
        group = {"id": self.audience.pk, "name": self.audience.name}
        return [
            OutboxRow(
                destination.pk,
                change.member.profile_id,
                sync_item(destination, group, change, visitor_identity(change.member)),
                # Asked at send time when the visitor is someone's; an exit never is.
                requires_consent=change.entered and change.member.profile_id is not None,
            )
            for change in changes
        ]


def visitor_identity(member: Member) -> dict:
    if member.key_kind == Visitor.KeyKind.DEVICE:
        return {"context": {"device": {"advertisingId": member.key}}}
    return {"anonymousId": member.key, "context": {}}


def _group_of(destination: Destination) -> AudienceGroup | None:
    sync = AudienceSync.objects.select_related("audience").filter(destination=destination).first()
    return AudienceGroup(sync.audience) if sync else None


register_group(Destination.Receiving.AUDIENCE, _group_of)


@transaction.atomic
def audience_sync_link(*, audience: Audience, destination: Destination, actor=None) -> AudienceSync:
    """Link a destination that receives a DMP audience to this audience, once: its initial
    load is queued after the commit, then who enters and exits."""
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    if destination.receiving != Destination.Receiving.AUDIENCE:
        raise ValidationError(
            {
                "destination": f"{destination} does not receive a DMP audience (it receives "
                f"{destination.get_receiving_display().lower()})"
            }
        )
    if AudienceSync.objects.filter(destination=destination).exists():
        raise ValidationError({"destination": f"{destination} already syncs an audience"})
    sync = AudienceSync.objects.create(
        destination=destination,
        audience=audience,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    key = slugify(audience.name).replace("-", "_") or f"audience_{audience.pk}"
    Destination.objects.filter(pk=destination.pk).update(
        audience_key=key, sync_loaded_at=None, synced_change_id=0, updated_at=timezone.now()
    )
    audit_record(actor=actor, action="audience.sync_link", obj=audience, note=destination.name)
    transaction.on_commit(lambda: audience_sync_queue(destination.pk))
    return sync


def audience_syncs_queue(audience_ids) -> int:
    """Queue what the syncs of these audiences have not sent yet (after their members
    changed and that change committed)."""
    syncs = AudienceSync.objects.filter(audience_id__in=list(audience_ids))
    return sum(audience_sync_queue(pk) for pk in syncs.values_list("destination_id", flat=True))


def visitors_consent_follow(profile_id: int, purpose_code: str) -> None:
    """A consent listener: the person's visitors in every loaded audience synced for the
    purpose leave it when the consent is gone and come back on a new grant, at once. Runs in
    the transaction of the change; whichever way the visitors' links follow it."""
    syncs = list(
        AudienceSync.objects.filter(destination__purpose_code=purpose_code)
        .exclude(destination__sync_loaded_at=None)
        .select_related("audience", "destination")
    )
    if not syncs:
        return
    allowed = profile_has_consent(profile_id, purpose_code)
    now = timezone.now()
    for sync in syncs:
        visitors = person_visitors(profile_id).filter(memberships__audience=sync.audience)
        members = [
            Member(pk, key_kind, key, profile_id)
            for pk, key_kind, key in visitors.values_list("pk", "key_kind", "key")
        ]
        if not members:
            continue
        group = AudienceGroup(sync.audience)
        changes = [
            Change(m, allowed, f"{group.message_prefix}-consent-{m.pk}-{now.timestamp()}", now)
            for m in members
        ]
        outbox_add(group.rows(sync.destination, changes))
