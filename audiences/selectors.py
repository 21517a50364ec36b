"""Reads used by exports, the admin and tasks."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from audiences.models import Visitor
from cdphub.sql import any_of
from profiles.models import Identity, Profile

ADVERTISING_PURPOSE = "advertising"
# A visitor may be linked to a known person only under one of these purposes.
LINKING_PURPOSES = ("advertising", "personalisation")


def profiles_allowed_for_advertising(queryset: QuerySet[Profile]) -> QuerySet[Profile]:
    """Only profiles the consent selector allows for advertising now: every activation
    towards an ad platform goes through here."""
    from consent.selectors import profiles_with_consent

    return queryset.filter(pk__in=profiles_with_consent(ADVERTISING_PURPOSE).values("pk"))


def segment_profiles(segment_id: int) -> QuerySet[Profile]:
    return Profile.objects.active().filter(memberships__segment_id=segment_id)


def audience_visitors(audience_id: int) -> QuerySet[Visitor]:
    return Visitor.objects.filter(memberships__audience_id=audience_id)


def person_visitor_keys(profile_id: int) -> tuple[list[str], list[str]]:
    """The cookie ids and device ids the person was seen with (their identities)."""
    keys = Identity.objects.filter(
        profile_id=profile_id, kind__in=[Identity.Kind.ANONYMOUS_ID, Identity.Kind.DEVICE_ID]
    ).values_list("kind", "value")
    cookies = [value for kind, value in keys if kind == Identity.Kind.ANONYMOUS_ID]
    devices = [value for kind, value in keys if kind == Identity.Kind.DEVICE_ID]
    return cookies, devices


def person_visitors(profile_id: int) -> QuerySet[Visitor]:
    """The person's visitors: linked to them, or keyed by a cookie or device id of theirs
    (whether or not their consent lets them be linked now)."""
    cookies, devices = person_visitor_keys(profile_id)
    return Visitor.objects.filter(
        Q(profile_id=profile_id)
        | Q(key_kind=Visitor.KeyKind.COOKIE, key__in=cookies)
        | Q(key_kind=Visitor.KeyKind.DEVICE, key__in=devices)
    )


# A visitor's key kind -> the identity kind of the same id on a profile.
IDENTITY_OF_KEY = {
    Visitor.KeyKind.COOKIE: Identity.Kind.ANONYMOUS_ID,
    Visitor.KeyKind.DEVICE: Identity.Kind.DEVICE_ID,
}


def visitors_allowed(visitors: QuerySet[Visitor], purpose_code: str) -> QuerySet[Visitor]:
    """The visitors that may be used for the purpose now: those of a person (linked to them,
    or keyed by one of their cookie or device ids: links exist only under consent) who has
    it, and those of no one known. The one answer for the DMP's files and syncs alike."""
    from consent.selectors import profiles_with_consent

    consenting = profiles_with_consent(purpose_code).values("pk")

    def someone_elses(kind: str) -> Exists:
        identities = Identity.objects.filter(kind=kind, value=OuterRef("key"))
        return Exists(identities.exclude(profile__in=consenting))

    return visitors.filter(
        Q(profile__in=consenting)
        | Q(profile__isnull=True)
        & ~(Q(key_kind=Visitor.KeyKind.COOKIE) & someone_elses(Identity.Kind.ANONYMOUS_ID))
        & ~(Q(key_kind=Visitor.KeyKind.DEVICE) & someone_elses(Identity.Kind.DEVICE_ID))
    )


def visitor_people(visitors: list[tuple[int, str, str]]) -> dict[int, int]:
    """Whose each (id, key kind, key) visitor is: the person it is linked to, or else the
    person whose cookie or device id it is (a known person's visitor follows their consent,
    linked or not: links exist only under consent). Visitors of no one known are left out."""
    linked = dict(
        Visitor.objects.filter(
            pk__in=any_of(pk for pk, _, _ in visitors), profile__isnull=False
        ).values_list("pk", "profile_id")
    )
    by_key = {(IDENTITY_OF_KEY[kind], key): pk for pk, kind, key in visitors if pk not in linked}
    for kind in IDENTITY_OF_KEY.values():
        values = [key for identity_kind, key in by_key if identity_kind == kind]
        if not values:
            continue
        identities = Identity.objects.filter(kind=kind, value__in=values).values_list(
            "value", "profile_id"
        )
        for value, profile_id in identities:
            linked[by_key[(kind, value)]] = profile_id
    return linked


def profiles_allowed_for_linking(queryset: QuerySet[Profile]) -> QuerySet[Profile]:
    """Profiles the consent selector allows for advertising or personalisation now."""
    from consent.selectors import profiles_with_consent

    allowed = Q()
    for purpose in LINKING_PURPOSES:
        allowed |= Q(pk__in=profiles_with_consent(purpose).values("pk"))
    return queryset.filter(allowed)
