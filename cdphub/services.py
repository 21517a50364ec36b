from __future__ import annotations

from django.db import transaction

from cdphub.api_auth import SCOPES
from cdphub.errors import DomainError
from cdphub.hashing import new_secret, secret_hash
from cdphub.models import ApiKey


class InvalidScope(DomainError):
    field = "scopes"


@transaction.atomic
def api_key_create(*, name: str, scopes: list[str], created_by=None) -> tuple[ApiKey, str]:
    """Create an API key; returns it with the plain key, which is not stored anywhere."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidScope(
            f"unknown scope(s) {', '.join(unknown)}; valid scopes: {', '.join(SCOPES)}"
        )
    key = new_secret("cdp")
    api_key = ApiKey.objects.create(
        name=name,
        key_hash=secret_hash(key),
        prefix=key[:10],
        scopes=sorted(set(scopes)),
        created_by=created_by,
    )
    return api_key, key
