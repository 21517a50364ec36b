"""Salted hashes of erased identifiers for the suppression list.

HMAC-SHA256 keyed with the project's secret key: without the key, the list cannot be reversed by
hashing guessed e-mail addresses or phone numbers. The kind prefixes the value so an e-mail and a
user id with the same text never collide. Values are normalised first (the same normaliser as
identity resolution), so ``Anna@Example.com`` and ``anna@example.com`` hash alike.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

from profiles.normalize import InvalidIdentifier, normalize_identifier


def suppression_hash(kind: str, value: str) -> str:
    try:
        normalised = normalize_identifier(kind, value)
    except InvalidIdentifier:
        normalised = str(value).strip()
    message = f"{kind}:{normalised}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
