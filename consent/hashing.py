"""Salted hashes of erased identifiers for the suppression list.

HMAC-SHA256 keyed with the project's secret key: without the key, the list cannot be reversed by
hashing guessed e-mail addresses or phone numbers. The kind prefixes the value so an e-mail and a
user id with the same text never collide. Values are normalised first (the same normaliser as
identity resolution), so ``Anna@Example.com`` and ``anna@example.com`` hash alike.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from django.conf import settings

from profiles.resolution.normalize import InvalidIdentifier, normalize_identifier


def suppression_hash(kind: str, value: str) -> str:
    try:
        normalised = normalize_identifier(kind, value)
    except InvalidIdentifier:
        normalised = str(value).strip()
    return normalised_hash(kind, normalised)


def normalised_hash(kind: str, normalised: str) -> str:
    """The hash of a value already in its canonical form: imports normalise every identifier
    once, and normalising again (parsing a phone number above all) costs more than hashing."""
    keyed = _keyed(settings.SECRET_KEY).copy()
    keyed.update(f"{kind}:{normalised}".encode())
    return keyed.hexdigest()


@functools.lru_cache(maxsize=2)
def _keyed(secret: str) -> hmac.HMAC:
    # Keying costs two hash blocks; imports hash thousands of values per batch.
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)
