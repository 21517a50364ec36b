"""Secrets are shown once and stored as hashes: API keys and source write keys."""

from __future__ import annotations

import hashlib
import secrets


def secret_hash(secret: str) -> str:
    # Keys are 32+ random bytes, so a fast digest is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"
