"""Erasure reaches the destinations: when a person is erased on request, every destination
whose kind can delete is sent one ``"type": "delete"`` item, queued in the erasure's transaction
and delivered by the engine like any other (retried, dead-lettered, whatever the consent, since
it takes data away). Each answer is written to the request's log (``consent.dsar``).

The item names the person by what the destination received: the cdphub profile ids (every item
carried one as ``profileId``, merged profiles included) and SHA-256 hashes of their normalised
e-mails, phones and user ids, for systems keyed on those. No identifier in clear: a destination
that never had the person learns nothing it could use. A kind that matches people its own way
(an ad platform) builds its own item (``deletion_item``)."""

from __future__ import annotations

import hashlib

from django.utils import timezone

from cdphub.delivery import OutboxRow, outbox_add
from profiles.destinations.kinds import deletion, kind_get
from profiles.models import Destination


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def deletion_item(subject, request_id: int, destination_id: int) -> dict:
    return deletion(
        request_id,
        destination_id,
        timestamp=timezone.now().isoformat(),
        profileIds=sorted(subject.profile_ids),
        identifiers={
            "email_sha256": sorted(sha256(v) for v in subject.emails),
            "phone_sha256": sorted(sha256(v) for v in subject.phones),
            "user_id_sha256": sorted(sha256(v) for v in subject.user_ids),
        },
    )


def destinations_erase(subject, request_id: int) -> list[str]:
    """The erasure notifier (``consent.registry``): queue the deletions; one line for the
    request's log about what was queued and which destinations cannot delete."""
    if not subject.profile_ids:
        return []
    deleting, by_hand = [], []
    for destination in Destination.objects.order_by("pk"):
        kind = kind_get(destination.kind)
        (deleting if kind is not None and kind.deletes else by_hand).append(destination)
    outbox_add(
        OutboxRow(
            destination.pk,
            None,
            getattr(kind_get(destination.kind), "deletion_item", deletion_item)(
                subject, request_id, destination.pk
            ),
            requires_consent=False,
        )
        for destination in deleting
    )
    lines = []
    if deleting:
        names = ", ".join(d.name for d in deleting)
        lines.append(f"deletion queued for destinations: {names}")
    if by_hand:
        names = ", ".join(d.name for d in by_hand)
        lines.append(f"delete the person by hand in (their kind cannot be told): {names}")
    return lines
