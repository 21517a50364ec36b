"""The interface of a destination kind and the registry of kinds.

A kind knows one receiving system: it checks a destination's config when it is written (so a
wrong URL is an error for the person typing it, not a dead letter later) and sends one batch,
answering with a ``SendResult``. It never retries, sleeps or records anything: the delivery
engine (``cdphub.delivery``) does that for every kind alike."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class SendResult:
    """How sending one batch ended.

    - ``delivered``: the receiver accepted it;
    - ``transient``: it may work later (no connection, timeout, 5xx, 429): retried with
      backoff, at least ``retry_after`` seconds later when the receiver said so;
    - ``permanent``: the receiver refused it (other 4xx): a dead letter, with ``response``
      (what it answered, kept for a dead letter; given for a delivery too, for a kind whose
      next request needs it)."""

    outcome: str
    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None
    response: str = ""

    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"

    def explained(self, detail: str, outcome: str | None = None) -> SendResult:
        """The same result with the receiver's own words added to its error (an API's
        message), and another outcome when its words say so (a limit: try again later)."""
        return replace(self, outcome=outcome or self.outcome, error=f"{self.error}: {detail}"[:500])


@dataclass(frozen=True)
class Outgoing:
    """What a kind is given to send: the destination's settings and the batch."""

    destination_id: int
    name: str
    config: dict
    secret: str
    items: list[dict]
    idempotency_key: str


class Kind(Protocol):
    code: str
    label: str
    # Whether destinations of this kind get a signing secret at creation.
    signs: bool
    # Whether the receiving system can be told to delete a person (an erasure sends it a
    # ``"type": "delete"`` item); if not, the request's log says to delete them there by hand.
    deletes: bool
    # Whether it takes events; if not (an ad platform's audience), only audience syncs.
    receives_events: bool

    def config_validate(self, config: dict) -> dict:
        """The config as stored; raises ``django.core.exceptions.ValidationError`` keyed by
        config entry when it is wrong."""

    def send(self, outgoing: Outgoing) -> SendResult:
        """Send one batch; never raises for the receiver's sake."""

    def config_masked(self, config: dict) -> dict:
        """The config as shown to those who may see a destination but not change it: the
        receiver's credentials in it masked."""

    # Optional: ``deletion_item(subject, request_id, destination_id) -> dict``, the item an
    # erasure sends, when the kind needs the person named its own way (an ad platform's
    # normalisation and hashing); otherwise ``profiles.destinations.erasure.deletion_item``.


def config_checked(config: object, allowed: set[str], needs: str) -> dict:
    """The config if it is an object of known entries; ``needs`` says what it must hold."""
    if not isinstance(config, dict):
        raise ValidationError({"config": f"must be an object with {needs}"})
    unknown = set(config) - allowed
    if unknown:
        raise ValidationError({"config": f"unknown settings: {', '.join(sorted(unknown))}"})
    return config


def deletion(request_id: int, destination_id: int, **names) -> dict:
    """An erasure's item for one destination, naming the person as ``names`` say (each kind
    its own way), with a messageId every resend repeats."""
    return {
        "type": "delete",
        "messageId": f"erasure-{request_id}-{destination_id}",
        "erasureRequest": request_id,
        **names,
    }


AUDIENCE_ENTERED = "Audience Entered"
AUDIENCE_EXITED = "Audience Exited"


def advertising_id(item: dict) -> str:
    """A device's advertising id, as a visitor's item names it (``context.device``)."""
    device = (item.get("context") or {}).get("device") or {}
    return str(device.get("advertisingId") or "") if isinstance(device, dict) else ""


def audience_member(item: dict) -> object:
    """Who an audience sync's item is about: a visitor (its cookie or device id) or a person."""
    return (
        advertising_id(item)
        or item.get("anonymousId")
        or item.get("profileId")
        or item.get("userId")
        or id(item)
    )


def audience_changes(items: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """An audience sync's batch as a list tool needs it: the items of who is in and who is out
    (each member's last change in the batch counts: entered then exited is out), and the
    erasures' deletions, in their order."""
    last: dict[object, dict] = {}
    deletions = []
    for item in items:
        if item.get("type") == "delete":
            deletions.append(item)
        elif item.get("event") in (AUDIENCE_ENTERED, AUDIENCE_EXITED):
            last[audience_member(item)] = item
    entered = [item for item in last.values() if item["event"] == AUDIENCE_ENTERED]
    exited = [item for item in last.values() if item["event"] == AUDIENCE_EXITED]
    return entered, exited, deletions


_kinds: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    _kinds[kind.code] = kind
    return kind


def kind_get(code: str) -> Kind | None:
    return _kinds.get(code)


def kind_choices() -> list[tuple[str, str]]:
    return [(kind.code, kind.label) for kind in _kinds.values()]


def config_shown(destination, may_change: bool) -> dict:
    """A destination's config as one may see it: whole for those who may change the
    destination (they could set it anyway), its credentials masked for the others."""
    kind = kind_get(destination.kind)
    if may_change or kind is None:
        return destination.config
    return kind.config_masked(destination.config)
