"""Reads used by exports, the admin and tasks."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from audiences.models import Visitor
from profiles.models import Profile

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


def profiles_allowed_for_linking(queryset: QuerySet[Profile]) -> QuerySet[Profile]:
    """Profiles the consent selector allows for advertising or personalisation now."""
    from consent.selectors import profiles_with_consent

    allowed = Q()
    for purpose in LINKING_PURPOSES:
        allowed |= Q(pk__in=profiles_with_consent(purpose).values("pk"))
    return queryset.filter(allowed)
