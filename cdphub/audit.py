"""The one audit trail: every service that changes state takes the acting user and records
who did what, to which record, in the same transaction as the change (Zulip's ``do_*``
actions). The admin shows a record's entries on its history page."""

from __future__ import annotations

from django.db import models

from cdphub.models import AuditEntry

SYSTEM = "system"


def actor_label(actor) -> str:
    if actor is None or not getattr(actor, "pk", None):
        return SYSTEM
    return str(getattr(actor, "username", None) or actor)[:150]


def audit_record(
    *, actor, action: str, obj: models.Model | None = None, note: str = ""
) -> AuditEntry:
    """Record one change. ``action`` is ``<model>.<verb>`` (``profile_merge.undo``); ``note``
    says what changed by ids and counts, never personal values."""
    return AuditEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_label=actor_label(actor),
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        note=note[:500],
    )


def audit_record_many(
    *, actor, action: str, model: type[models.Model], ids, note: str = ""
) -> list[AuditEntry]:
    """One entry per record of a bulk change (an admin action on a selection)."""
    label = actor_label(actor)
    entries = [
        AuditEntry(
            actor=actor if getattr(actor, "pk", None) else None,
            actor_label=label,
            action=action,
            object_type=model._meta.label_lower,
            object_id=str(pk),
            note=note[:500],
        )
        for pk in ids
    ]
    return AuditEntry.objects.bulk_create(entries, batch_size=2000)


def audit_entries_for(obj: models.Model):
    return AuditEntry.objects.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))
