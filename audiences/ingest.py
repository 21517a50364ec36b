"""The DMP's view of collected events: anonymous browsers and devices become (or refresh)
visitors, and an identified person's visitors are linked to them while consent allows."""

from __future__ import annotations

from collections.abc import Sequence

from audiences.models import Visitor
from audiences.services import (
    VisitorSighting,
    visitor_links_sync,
    visitor_links_sync_many,
    visitors_observe,
)

BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
DEVICE_TYPES = {choice.value for choice in Visitor.DeviceType}


def visitors_from_messages(messages: Sequence) -> None:
    sightings = [s for message in messages for s in sightings_of(message)]
    if sightings:
        visitors_observe(sightings=sightings)
    identified = {message.profile for message in messages if message.type == "identify"}
    visitor_links_sync_many(profile_ids=sorted(identified))


def sightings_of(message) -> list[VisitorSighting]:
    """Messages with only an anonymous id (and/or a device id): nobody known, a visitor."""
    payload = message.payload
    if payload.get("userId"):
        return []
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    device_type = str(device.get("type") or "").lower()
    attributes = {
        "seen_at": message.timestamp,
        "country": country_of(context),
        "device_type": device_type if device_type in DEVICE_TYPES else "",
        "browser": browser_of(str(context.get("userAgent") or "")),
    }
    sightings = []
    if payload.get("anonymousId"):
        sightings.append(
            VisitorSighting(key_kind="cookie", key=str(payload["anonymousId"])[:255], **attributes)
        )
    if device.get("id"):
        sightings.append(
            VisitorSighting(key_kind="device", key=str(device["id"])[:255], **attributes)
        )
    return sightings


def country_of(context: dict) -> str:
    location = context.get("location") if isinstance(context.get("location"), dict) else {}
    country = str(location.get("country") or "")
    if len(country) == 2:
        return country.upper()
    locale = str(context.get("locale") or "")  # "nl-NL"
    return locale[-2:].upper() if len(locale) == 5 and locale[2] in "-_" else ""


def browser_of(user_agent: str) -> str:
    return next((name for marker, name in BROWSERS if marker in user_agent), "")


LINKING_PURPOSES = frozenset({"advertising", "personalisation"})


def visitor_links_follow_consent(profile_id: int, purpose_code: str) -> None:
    """A change of advertising or personalisation consent links or unlinks at once."""
    if purpose_code in LINKING_PURPOSES:
        from profiles.models import Profile

        visitor_links_sync(profile=Profile(pk=profile_id))
