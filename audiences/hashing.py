"""Identifier normalisation and hashing per ad-platform destination.

Each platform hashes what it receives with SHA-256 and matches on the hex digest, so an
identifier must be normalised exactly the way that platform does before hashing, or it will
not match:

- Google Customer Match: e-mail trimmed and lower-cased; phone in E.164 with the ``+``.
- Meta Custom Audiences: e-mail trimmed and lower-cased; phone as digits only, with the
  country code and without ``+``.

Device ids (mobile advertising ids) are sent as they are; cookie ids only go to plain id lists.
"""

from __future__ import annotations

import hashlib

from profiles.resolution.normalize import InvalidIdentifier, normalize_phone


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def trimmed_lower_email(value: str) -> str:
    # Deliberately no junk-value filtering here: that happens when identifiers are collected.
    email = str(value or "").strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or " " in email:
        raise InvalidIdentifier(f"e-mail {value!r} is not an address")
    return email


def google_email(value: str) -> str:
    return trimmed_lower_email(value)


def google_phone(value: str) -> str:
    return normalize_phone(value)


def meta_email(value: str) -> str:
    return trimmed_lower_email(value)


def meta_phone(value: str) -> str:
    return normalize_phone(value).lstrip("+")


# destination -> (CSV header, normaliser of e-mails, normaliser of phones, device id column)
DESTINATIONS = {
    "google": {
        "email": ("Email", google_email),
        "phone": ("Phone", google_phone),
        "device": "Mobile Device ID",
    },
    "meta": {
        "email": ("email", meta_email),
        "phone": ("phone", meta_phone),
        "device": "madid",
    },
}


def hashed_email(destination: str, value: str) -> str:
    """Normalise for the destination, then SHA-256 hex; raises ``InvalidIdentifier``."""
    _, normalise = DESTINATIONS[destination]["email"]
    return sha256_hex(normalise(value))


def hashed_phone(destination: str, value: str) -> str:
    _, normalise = DESTINATIONS[destination]["phone"]
    return sha256_hex(normalise(value))


def person_columns(destination: str) -> list[str]:
    spec = DESTINATIONS[destination]
    return [spec["email"][0], spec["phone"][0], spec["device"]]
