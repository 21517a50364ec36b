"""Every write to a destination, taking the acting user and writing one audit row in the same
transaction. The delivery engine (``cdphub.delivery``) pauses a destination that keeps
failing through ``destination_pause`` too, as the system."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from cdphub.audit import audit_record
from cdphub.hashing import new_secret
from consent.selectors import purpose_is_active
from profiles.destinations.kinds import kind_get
from profiles.models import Destination, Event, Segment, Source
from profiles.segments import changes as segment_changes
from profiles.segments.rules import rule_errors

# What a marketer may change after creation; the kind is fixed (its config would not fit).
EDITABLE = (
    "name",
    "config",
    "source",
    "event_types",
    "event_names",
    "profile_rule",
    "purpose_code",
    "batch_size",
    "batch_interval_seconds",
)


def audience_key(segment: Segment) -> str:
    """The key a receiver files a synced audience under: the segment's name in snake case
    when the sync is created, kept by the destination (a renamed segment keeps its key)."""
    return slugify(segment.name).replace("-", "_") or f"segment_{segment.pk}"


def receiving_of(segment: Segment | None, receiving: str = "") -> str:
    """What a new destination receives: a segment's members when one is chosen, otherwise
    as asked (events by default)."""
    if segment is not None:
        return Destination.Receiving.SEGMENT
    return receiving or Destination.Receiving.EVENTS


def destination_validate(destination: Destination) -> None:
    """Check a destination before it is saved (its kind's config, the purpose, the types);
    raises ``ValidationError`` keyed by field. Normalises the config in place."""
    kind = kind_get(destination.kind)
    if kind is None:
        raise ValidationError({"kind": f"unknown destination kind {destination.kind!r}"})
    destination.config = kind.config_validate(destination.config)
    Receiving = Destination.Receiving
    if destination.receiving == Receiving.SEGMENT and destination.segment_id is None:
        raise ValidationError({"segment": "an audience sync of a segment: choose the segment"})
    if destination.receiving == Receiving.AUDIENCE and destination.segment_id is not None:
        raise ValidationError({"segment": "a DMP audience's sync takes no segment"})
    if not kind.receives_events and not destination.is_audience_sync:
        raise ValidationError(
            {
                "segment": f"a {kind.label} receives an audience, not events: choose a segment "
                "(or receive a DMP audience)"
            }
        )
    if not purpose_is_active(destination.purpose_code):
        raise ValidationError(
            {"purpose_code": f"{destination.purpose_code!r} is not an active consent purpose"}
        )
    unknown = set(destination.event_types) - set(Event.Type.values)
    if unknown:
        raise ValidationError({"event_types": f"unknown types: {', '.join(sorted(unknown))}"})
    if destination.profile_rule:
        problems = rule_errors(destination.profile_rule)
        if problems:
            raise ValidationError({"profile_rule": problems})
    if destination.is_audience_sync:
        filters = [
            name
            for name in ("source", "event_types", "event_names", "profile_rule")
            if getattr(destination, name)
        ]
        if filters:
            raise ValidationError(
                dict.fromkeys(
                    filters,
                    f"an audience sync receives its {destination.receiving}'s members, not "
                    "events: leave "
                    "the event filters and the profile rule empty",
                )
            )
    destination.full_clean(exclude=["signing_secret", "secret_prefix"])


@transaction.atomic
def destination_create(
    *,
    name: str,
    kind: str,
    purpose_code: str,
    config: dict | None = None,
    source: Source | None = None,
    event_types: Iterable[str] = (),
    event_names: Iterable[str] = (),
    profile_rule: dict | None = None,
    batch_size: int = 100,
    batch_interval_seconds: int = 0,
    segment: Segment | None = None,
    receiving: str = "",
    actor=None,
) -> tuple[Destination, str]:
    """Create a destination; returns it with its signing secret (empty for a kind that does
    not sign), which is shown once: copy it to the receiver now. With a ``segment`` it is an
    audience sync, whose initial load is queued once it is committed. ``receiving`` a DMP
    audience: a sync whose audience is linked on the audience's side (``audiences.syncs``)."""
    destination = Destination(
        name=name,
        kind=kind,
        config=config if config is not None else {},
        purpose_code=purpose_code,
        receiving=receiving_of(segment, receiving),
        segment=segment,
        audience_key=audience_key(segment) if segment is not None else "",
        source=source,
        event_types=list(event_types),
        event_names=list(event_names),
        profile_rule=profile_rule or {},
        batch_size=batch_size,
        batch_interval_seconds=batch_interval_seconds,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    destination_validate(destination)
    secret = ""
    if kind_get(kind).signs:
        secret = new_secret("whsec")
        destination.signing_secret = secret
        destination.secret_prefix = secret[:10]
    destination.save()
    audit_record(actor=actor, action="destination.create", obj=destination, note=kind)
    if segment is not None:
        # The segment's syncs catch up after the commit, as after a change of its members:
        # this new one queues its initial load.
        segment_changes.notify_after_commit(segment.pk)
    return destination, secret


@transaction.atomic
def destination_update(*, destination: Destination, actor=None, **changes) -> Destination:
    """Change what a destination receives or where it is sent; the config is checked again
    (a URL must still pass the outbound guard)."""
    refused = set(changes) - set(EDITABLE)
    if refused:
        raise ValidationError({name: "cannot be changed" for name in sorted(refused)})
    for name, value in changes.items():
        setattr(destination, name, list(value) if name in ("event_types", "event_names") else value)
    destination_validate(destination)
    destination.save()
    note = "changed: " + ", ".join(sorted(changes))
    audit_record(actor=actor, action="destination.update", obj=destination, note=note)
    return destination


@transaction.atomic
def destination_pause(*, destination: Destination, reason: str, actor=None) -> Destination:
    """Stop sending; what it receives meanwhile waits in the outbox for ``destination_resume``."""
    destination.status = Destination.Status.PAUSED
    destination.paused_reason = reason[:500]
    destination.paused_at = timezone.now()
    destination.save(update_fields=["status", "paused_reason", "paused_at", "updated_at"])
    audit_record(actor=actor, action="destination.pause", obj=destination, note=reason)
    return destination


@transaction.atomic
def destination_resume(*, destination: Destination, actor=None) -> Destination:
    """Send again, starting with what waited; the failure count starts over. The caller queues
    the sender (``cdphub.delivery.deliveries_schedule``) after the commit."""
    destination.status = Destination.Status.ACTIVE
    destination.paused_reason = ""
    destination.paused_at = None
    destination.consecutive_failures = 0
    destination.save(
        update_fields=[
            "status",
            "paused_reason",
            "paused_at",
            "consecutive_failures",
            "updated_at",
        ]
    )
    audit_record(actor=actor, action="destination.resume", obj=destination)
    return destination


@transaction.atomic
def destination_delete(*, destination: Destination, actor=None) -> None:
    """Delete a destination with its outbox and attempts: what still waited is never sent. A
    sender sending one of its batches right now finishes that batch first (the delete waits
    for its row locks)."""
    audit_record(actor=actor, action="destination.delete", obj=destination, note=destination.name)
    destination.delete()
