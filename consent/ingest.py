"""Consent arriving with collected events: a ``Consent Updated`` track event, or a TCF string
in a message's context (from a web CMP)."""

from __future__ import annotations

from collections.abc import Sequence

from consent.services import CONSENT_EVENT, consent_record_event, tcf_from_context


def carries_consent(message) -> bool:
    payload = message.payload
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    is_consent_event = message.type == "track" and payload.get("event") == CONSENT_EVENT
    return is_consent_event or bool(tcf_from_context(context))


def consent_from_messages(messages: Sequence) -> None:
    from profiles.models import Profile, Source

    carrying = [message for message in messages if carries_consent(message)]
    if not carrying:
        return
    sources = dict(
        Source.objects.filter(pk__in={m.source_id for m in carrying}).values_list("pk", "name")
    )
    for message in carrying:
        payload = message.payload
        consent_record_event(
            profile=Profile(pk=message.profile),
            name=str(payload.get("event") or ""),
            properties=payload.get("properties")
            if isinstance(payload.get("properties"), dict)
            else {},
            context=payload.get("context") if isinstance(payload.get("context"), dict) else {},
            source=sources.get(message.source_id, ""),
            occurred_at=message.timestamp,
        )
