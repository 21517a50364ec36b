"""Profile writes other apps make: traits copied in from the CRM, identities taken away.
Processing writes in bulk through ``profiles.resolution.batch``; everyone else comes here (and
to ``profiles.resolution.resolver.profiles_resolve`` to find or create a profile)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from psycopg.types.json import Jsonb

from cdphub.audit import audit_record
from cdphub.hashing import new_secret, secret_hash
from cdphub.sql import query
from profiles.ingest.collect import source_cache_clear
from profiles.models import Identity, Profile, Source
from profiles.resolution.identifiers import identifiers_lock
from profiles.resolution.normalize import InvalidIdentifier, normalize_identifier

# Traits that are also identifiers: correcting one moves the identity with it.
IDENTIFIER_TRAITS = {"email": Identity.Kind.EMAIL, "phone": Identity.Kind.PHONE}


def profile_traits_merge(traits_by_profile: dict[int, dict]) -> dict[int, dict]:
    """Copy traits into profiles (a trait sent wins over the stored one); returns, per profile it
    changed, the traits it replaced (trait -> previous value) and those it added, so the caller
    can put them back (an import revert). Profiles already holding every value are not
    rewritten."""
    if not traits_by_profile:
        return {}
    table = Profile._meta.db_table
    rows = query(
        f"""
        WITH v AS (
            SELECT id, traits::jsonb AS traits
              FROM unnest(%b::bigint[], %b::text[]) AS v(id, traits)
        ), before AS (
            SELECT p.id, p.traits AS old, v.traits AS new
              FROM {table} AS p JOIN v ON v.id = p.id
             WHERE NOT p.traits @> v.traits
               FOR UPDATE OF p
        ), merged AS (
            UPDATE {table} AS p SET traits = p.traits || b.new, updated_at = now()
              FROM before AS b WHERE p.id = b.id
        )
        SELECT id,
               coalesce((SELECT jsonb_object_agg(key, old -> key)
                           FROM jsonb_object_keys(new) AS key
                          WHERE old ? key AND old -> key <> new -> key), '{{}}')::text,
               coalesce((SELECT jsonb_agg(key)
                           FROM jsonb_object_keys(new) AS key
                          WHERE NOT old ? key), '[]')::text
          FROM before
        """,  # noqa: S608 - the table name is ours; values are parameters
        [list(traits_by_profile), [json.dumps(t) for t in traits_by_profile.values()]],
    )
    return {
        pk: {"replaced": json.loads(replaced), "added": json.loads(added)}
        for pk, replaced, added in rows
    }


def traits_normalize(traits: dict) -> dict:
    """Traits as a profile stores them: an e-mail or phone in its canonical form, a blank one
    (missing, None or only spaces) as "". Raises ``ValidationError`` keyed by trait when one is
    not a valid identifier."""
    normalised, errors = dict(traits), {}
    for trait, kind in IDENTIFIER_TRAITS.items():
        if trait not in traits:
            continue
        if traits[trait] is None or not str(traits[trait]).strip():
            normalised[trait] = ""
            continue
        try:
            normalised[trait] = normalize_identifier(kind, traits[trait])
        except InvalidIdentifier as exc:
            errors[trait] = str(exc)
    if errors:
        raise ValidationError(errors)
    return normalised


@transaction.atomic
def profile_traits_edit(*, profile: Profile, traits: dict, actor=None) -> list[str]:
    """Replace a profile's given traits by hand (the admin's explicit edit): identifiers
    normalised like any trait, and an audit entry naming the keys changed, never their
    values. Returns the keys changed."""
    if not isinstance(traits, dict):
        raise ValidationError({"traits": "traits are a JSON object"})
    traits = traits_normalize(traits)
    before = profile.traits or {}
    changed = sorted(key for key in {*before, *traits} if before.get(key) != traits.get(key))
    if changed:
        profile.traits = traits
        profile.save(update_fields=["traits", "updated_at"])
        audit_record(
            actor=actor,
            action="profile.traits_edit",
            obj=profile,
            note=f"changed {len(changed)} trait(s): {', '.join(changed)}"[:500],
        )
    return changed


@transaction.atomic
def profiles_rectify(*, profiles: QuerySet, corrections: dict) -> int:
    """Correct the given traits of these profiles (a rectification request). A corrected e-mail
    or phone replaces the old one as an identity too, so the person is found by the new value
    and no longer by the wrong one. Refused, changing nothing, when a value is invalid or
    already identifies another person. Returns how many profiles were corrected."""
    corrections = traits_normalize(corrections)
    live = list(profiles.filter(merged_into__isnull=True).select_for_update().order_by("pk"))
    for profile in live:
        for trait, kind in IDENTIFIER_TRAITS.items():
            if corrections.get(trait):  # a blank correction clears the trait only
                _identity_correct(profile, kind, profile.traits.get(trait), corrections[trait])
        profile.traits = {**(profile.traits or {}), **corrections}
        profile.save(update_fields=["traits", "updated_at"])
    return len(live)


def _identity_correct(profile: Profile, kind: str, old: object, new: str) -> None:
    try:
        old = normalize_identifier(kind, old) if old not in (None, "") else None
    except InvalidIdentifier:
        old = None
    identifiers_lock([(kind, new)] + ([(kind, old)] if old else []))
    owner = Identity.objects.filter(kind=kind, value=new).values_list("profile_id", flat=True)
    owner = owner.first()
    if owner is not None and owner != profile.pk:
        raise ValidationError(
            {
                kind: f"the corrected {kind} already identifies another profile (#{owner}): "
                "review and merge the two profiles first"
            }
        )
    wrong = Identity.objects.filter(profile=profile, kind=kind, value=old) if old else None
    if owner is None and wrong is not None and wrong.exists():
        wrong.update(value=new)
    elif owner is None:
        Identity.objects.create(
            profile=profile,
            kind=kind,
            value=new,
            first_seen_at=timezone.now(),
            last_seen_at=timezone.now(),
        )
    elif wrong is not None and old != new:
        wrong.delete()


def profile_traits_merge_undo(*, profile_ids: list[int], befores: list[dict]) -> None:
    """Undo ``profile_traits_merge`` for these profiles: the traits it replaced get their
    previous values back and those it added go (``befores`` as it returned them, per profile).
    Undo the latest merge first when several changed one profile."""
    if not profile_ids:
        return
    query(
        f"UPDATE {Profile._meta.db_table} AS p SET traits ="  # noqa: S608 - table from metadata
        " (p.traits - ARRAY(SELECT jsonb_array_elements_text(v.before -> 'added')))"
        " || (v.before -> 'replaced'), updated_at = now()"
        " FROM unnest(%b::bigint[], %b::jsonb[]) AS v(id, before) WHERE p.id = v.id",
        [profile_ids, [Jsonb(before) for before in befores]],
        fetch=False,
    )


def identities_delete(*, identity_ids: list[int], keep_profiles: set[int] = frozenset()) -> int:
    """Delete identities by id (a reverted import's), except those of ``keep_profiles``."""
    identities = Identity.objects.filter(pk__in=identity_ids).exclude(profile_id__in=keep_profiles)
    return identities.delete()[0]


def profiles_delete(*, profile_ids: list[int]) -> int:
    """Delete profiles that a reverted write created and nothing else uses (the caller checks
    that no other app's rows need them)."""
    return Profile.objects.filter(pk__in=profile_ids).delete()[0]


def identities_remove(identifiers: Iterable[tuple[str, str]]) -> int:
    """Forget identifiers (a CRM contact merged or imported away): whoever held them, no
    profile does now. One statement per kind."""
    by_kind: dict[str, list[str]] = {}
    for kind, value in identifiers:
        by_kind.setdefault(kind, []).append(value)
    return sum(
        Identity.objects.filter(kind=kind, value__in=values).delete()[0]
        for kind, values in by_kind.items()
    )


@transaction.atomic
def source_create(
    *,
    name: str,
    kind: str = Source.Kind.WEBSITE,
    is_active: bool = True,
    allowed_origins: list[str] | None = None,
    rate_limit_per_second: int | None = None,
    rate_limit_burst: int | None = None,
    identifier_limit_per_minute: int | None = None,
    actor=None,
) -> tuple[Source, str]:
    """Create a source; returns it with its write key, which is shown once and stored hashed.
    ``allowed_origins``: the web origins whose pages may send with it (none by default); the
    rate limits: None for the defaults, 0 for none."""
    write_key = new_secret("wk")
    source = Source(
        name=name,
        kind=kind,
        is_active=is_active,
        allowed_origins=allowed_origins or [],
        rate_limit_per_second=rate_limit_per_second,
        rate_limit_burst=rate_limit_burst,
        identifier_limit_per_minute=identifier_limit_per_minute,
        write_key_hash=secret_hash(write_key),
        write_key_prefix=write_key[:9],
    )
    source.full_clean(exclude=["write_key_hash"])
    source.save()
    audit_record(actor=actor, action="source.create", obj=source)
    return source, write_key


@transaction.atomic
def source_rotate_write_key(*, source: Source, actor=None) -> str:
    """A new write key for the source, shown once. The old one stops working (senders still
    using it get 401 and their messages are not stored), in every web process within the
    write-key cache time: rotate after a leak, then give the senders the new key."""
    write_key = new_secret("wk")
    source.write_key_hash = secret_hash(write_key)
    source.write_key_prefix = write_key[:9]
    source.save(update_fields=["write_key_hash", "write_key_prefix", "updated_at"])
    source_cache_clear()
    audit_record(actor=actor, action="source.rotate_write_key", obj=source)
    return write_key
