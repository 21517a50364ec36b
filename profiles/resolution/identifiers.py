"""A collected message's identifiers, normalised and ordered strongest first, and the advisory
locks every path takes on identifiers before it creates a profile or an identity for them."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable

from cdphub.sql import query
from profiles.models import Identity
from profiles.resolution.normalize import InvalidIdentifier, normalize_identifier

IDENTITY_TABLE = Identity._meta.db_table

Kind = Identity.Kind
Identifier = tuple[str, str]
# Order in which identifiers decide which profile a message belongs to, strongest first.
KIND_PRIORITY = (
    Kind.USER_ID,
    Kind.EMAIL,
    Kind.PHONE,
    Kind.EXTERNAL,
    Kind.CRM_CONTACT,
    Kind.DEVICE_ID,
    Kind.ANONYMOUS_ID,
)
# Identifiers of a browser or device rather than a person: shared devices make them unsafe.
WEAK_KINDS = frozenset({Kind.ANONYMOUS_ID, Kind.DEVICE_ID})


def message_identifiers(
    payload: dict,
    normalize=normalize_identifier,
    known_user_ids: Container[str] = frozenset(),
) -> list[tuple[str, str]]:
    """The normalised identifiers of a collected message, strongest first; junk is dropped.
    ``normalize`` may be a memoised normaliser (a batch repeats the same values many times).
    The ``previousId`` of an alias is a user id if it is among ``known_user_ids``, else the
    anonymous id used before sign-up (the spec allows either)."""
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    traits = payload.get("traits") if isinstance(payload.get("traits"), dict) else {}
    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    raw: list[tuple[str, object]] = [
        (Kind.USER_ID, payload.get("userId")),
        (Kind.ANONYMOUS_ID, payload.get("anonymousId")),
        (Kind.EMAIL, traits.get("email") or context_traits.get("email")),
        (Kind.PHONE, traits.get("phone") or context_traits.get("phone")),
        (Kind.DEVICE_ID, device.get("id")),
    ]
    previous_id = alias_previous_id(payload, normalize)
    if previous_id is not None:
        kind = Kind.USER_ID if previous_id in known_user_ids else Kind.ANONYMOUS_ID
        raw.append((kind, previous_id))
    # Segment's spec names the list externalIds; RudderStack's SDKs send it as externalId.
    for key in ("externalIds", "externalId"):
        external_ids = context.get(key)
        if not isinstance(external_ids, list):
            continue
        for external in external_ids:
            if isinstance(external, dict) and external.get("id") not in (None, ""):
                raw.append((Kind.EXTERNAL, f"{external.get('type') or 'id'}:{external['id']}"))
    identifiers: dict[tuple[str, str], None] = {}
    for kind, value in raw:
        if value in (None, ""):
            continue
        try:
            identifiers[(str(kind), normalize(kind, value))] = None
        except InvalidIdentifier:
            continue
    return sorted(identifiers, key=lambda pair: KIND_PRIORITY.index(pair[0]))


def alias_previous_id(payload: dict, normalize=normalize_identifier) -> str | None:
    """The normalised ``previousId`` of an alias message (user and anonymous ids normalise
    alike), or None."""
    if payload.get("type") != "alias" or payload.get("previousId") in (None, ""):
        return None
    try:
        return normalize(Kind.ANONYMOUS_ID, payload["previousId"])
    except InvalidIdentifier:
        return None


def known_user_ids(payloads: Iterable[dict], normalize=normalize_identifier) -> frozenset[str]:
    """The ``previousId`` values of the alias messages among ``payloads`` that are user ids: a
    user id stored already or sent by a message of the same batch."""
    payloads = list(payloads)
    previous = {alias_previous_id(payload, normalize) for payload in payloads} - {None}
    if not previous:
        return frozenset()
    in_batch = set()
    for payload in payloads:
        try:
            in_batch.add(normalize(Kind.USER_ID, payload.get("userId")))
        except InvalidIdentifier:
            continue
    found = in_batch & previous
    stored = query(
        f"SELECT value FROM {IDENTITY_TABLE} WHERE kind = %b AND value = ANY(%b::text[])",  # noqa: S608 - table names from model metadata; values are parameters
        [str(Kind.USER_ID), sorted(previous - found)],
    )
    return frozenset(found | {value for (value,) in stored})


def identifier_lock_key(identifier: Identifier) -> int:
    """The advisory lock key of one normalised identifier, the same for every path."""
    digest = hashlib.blake2b(f"{identifier[0]}:{identifier[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def identifiers_lock(identifiers: Iterable[Identifier]) -> None:
    """Wait for the transaction-level advisory locks of these identifiers, in key order (so two
    callers never wait on each other in a cycle). Event processing try-locks the same keys and
    leaves a message for later rather than wait, so it never blocks on a caller of this."""
    keys = sorted({identifier_lock_key(identifier) for identifier in identifiers})
    if keys:
        query(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(%b::bigint[]) AS k "
            "ORDER BY k) AS ordered",
            [keys],
        )
