from __future__ import annotations

from django.db import transaction

from cdphub.hashing import new_secret, secret_hash
from profiles.models import Source


@transaction.atomic
def source_create(
    *, name: str, kind: str = Source.Kind.WEBSITE, is_active: bool = True
) -> tuple[Source, str]:
    """Create a source; returns it with its write key, which is shown once and stored hashed."""
    write_key = new_secret("wk")
    source = Source.objects.create(
        name=name,
        kind=kind,
        is_active=is_active,
        write_key_hash=secret_hash(write_key),
        write_key_prefix=write_key[:9],
    )
    return source, write_key


@transaction.atomic
def source_rotate_write_key(*, source: Source) -> str:
    write_key = new_secret("wk")
    source.write_key_hash = secret_hash(write_key)
    source.write_key_prefix = write_key[:9]
    source.save(update_fields=["write_key_hash", "write_key_prefix", "updated_at"])
    return write_key
