"""What the CDP holds about a person, for access and erasure requests."""

from __future__ import annotations

from django.db.models import Q

from consent import registry
from consent.registry import Subject, delete_rows
from consent.retention import delete_in_batches, register_purger
from profiles.models import (
    Event,
    Identity,
    Profile,
    ProfileMerge,
    Segment,
    SegmentMembership,
    Source,
)


def _profiles(subject: Subject):
    return Profile.objects.filter(pk__in=subject.profile_ids)


registry.register(
    Profile,
    find=_profiles,
    erase=delete_rows,
    personal_fields=("traits", "computed_traits"),
    erase_order=90,  # last: everything else finds its rows through the profile ids
)
registry.register(
    Identity,
    find=lambda subject: Identity.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("value",),
    erase_order=80,
)
registry.register(
    Event,
    find=lambda subject: Event.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("properties", "context"),
    erase_order=80,
)
registry.register(
    SegmentMembership,
    find=lambda subject: SegmentMembership.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    erase_order=80,
)
registry.register(
    ProfileMerge,
    find=lambda subject: ProfileMerge.objects.filter(
        Q(survivor_id__in=subject.profile_ids) | Q(merged_id__in=subject.profile_ids)
    ),
    erase=delete_rows,
    personal_fields=("moved",),
    erase_order=80,
)
registry.register_not_personal(Source, "a sending system's name, not a person's")
registry.register_not_personal(Segment, "a segment's name; members are SegmentMembership rows")


def _purge_raw_events(cutoff, batch_size: int) -> int:
    return delete_in_batches(Event.objects.filter(timestamp__lt=cutoff), batch_size)


register_purger("raw_events", _purge_raw_events)
