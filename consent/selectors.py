"""The reads every activation path uses: whether a profile may be used for a purpose now."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, OuterRef, QuerySet

from cdphub.sql import any_of, query
from consent.hashing import normalised_hash, suppression_hash
from consent.models import (
    ConsentState,
    ConsentStatus,
    ProcessingRestriction,
    Purpose,
    Suppression,
)
from profiles.models import Profile
from profiles.selectors import profile_resolve

SUPPRESSION_TABLE = Suppression._meta.db_table


def profiles_with_consent(
    purpose_code: str, *, among: Iterable[int] | None = None
) -> QuerySet[Profile]:
    """Profiles that may be used for the purpose now: consent granted, not merged away, and
    processing not restricted (GDPR Art. 18); only ``among`` these profile ids when given.

    The ONE answer to "who may receive this": segment exports, audience exports, webhooks and
    CRM mailing lists all filter through it. ``Exists`` keeps it one row per profile and lets the
    partial index on granted states answer it. Among a few ids (a batch being sent), the granted
    states are looked up by those ids instead: the planner would otherwise hash every granted
    state of the purpose to keep a thousand.
    """
    granted = ConsentState.objects.filter(purpose__code=purpose_code, status=ConsentStatus.GRANTED)
    restricted = ProcessingRestriction.objects.filter(profile=OuterRef("pk"))
    allowed = Profile.objects.filter(~Exists(restricted), merged_into__isnull=True)
    if among is None:
        return allowed.filter(Exists(granted.filter(profile=OuterRef("pk"))))
    # One array parameter, not a placeholder per id (a batch being sent names a thousand).
    return allowed.filter(pk__in=granted.filter(profile_id__in=any_of(among)).values("profile_id"))


def purpose_is_active(code: str) -> bool:
    """Whether ``code`` names a purpose that can be asked for now."""
    return Purpose.objects.filter(code=code, is_active=True).exists()


def purposes_active() -> list[tuple[str, str]]:
    """(code, name) of the purposes that can be asked for now, marketing ones first."""
    purposes = Purpose.objects.filter(is_active=True).order_by("-is_marketing", "name")
    return list(purposes.values_list("code", "name"))


def profile_has_consent(profile: Profile | int, purpose_code: str) -> bool:
    """Whether one profile (followed to its merge survivor) may be used for the purpose now."""
    profile_id = profile.pk if isinstance(profile, Profile) else profile
    survivor = profile_resolve(profile_id)
    if survivor is None:
        return False
    return profiles_with_consent(purpose_code).filter(pk=survivor.pk).exists()


def marketing_consents(profile_id: int | None) -> list[tuple[str, str]]:
    """(purpose name, "granted" / "denied" / "withdrawn" / "unknown") of every active marketing
    purpose for a profile: whether sales may call, e-mail or text the person (unknown: no
    consent recorded, so no)."""
    purposes = Purpose.objects.filter(is_marketing=True, is_active=True).order_by("name")
    states = {}
    if profile_id is not None:
        states = dict(
            ConsentState.objects.filter(profile_id=profile_id, purpose__in=purposes).values_list(
                "purpose_id", "status"
            )
        )
    return [(purpose.name, states.get(purpose.pk, "unknown")) for purpose in purposes]


def is_suppressed(kind: str, value: str) -> bool:
    """Whether an identifier belongs to an erased person: ingestion and imports must not bring
    it back."""
    return Suppression.objects.filter(
        identifier_kind=kind, value_hash=suppression_hash(kind, value)
    ).exists()


def suppressed_identifiers(
    pairs: Iterable[tuple[str, str]], *, normalised: bool = False
) -> set[tuple[str, str]]:
    """The (kind, value) pairs among these that are suppressed, in one query: imports check a
    whole batch at once. ``normalised`` says the values are already in canonical form."""
    pairs = [(kind, value) for kind, value in pairs if value]
    if not pairs or not Suppression.objects.exists():  # nobody erased yet: skip the hashing
        return set()
    digest = normalised_hash if normalised else suppression_hash
    by_hash = {(kind, digest(kind, value)): (kind, value) for kind, value in pairs}
    # One array parameter, not thousands of IN-list parameters.
    found = query(
        f"SELECT identifier_kind, value_hash FROM {SUPPRESSION_TABLE}"  # noqa: S608 - table names from model metadata; values are parameters
        " WHERE value_hash = ANY(%b::text[])",
        [sorted({value_hash for _, value_hash in by_hash})],
    )
    return {by_hash[row] for row in found if row in by_hash}
