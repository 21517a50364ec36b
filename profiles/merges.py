"""The CDP's own rows that follow a profile merge (see profiles.merge_followers)."""

from __future__ import annotations

from profiles import merge_followers
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
    SegmentMembership,
    SegmentMembershipChange,
)

merge_followers.register(Identity, key="identities")
merge_followers.register(Event, key="events")
# Memberships are unique per segment: those the survivor has stay behind.
merge_followers.register(SegmentMembership, key="memberships", unique_with="segment_id")

merge_followers.register_staying(Profile, "merged_into is the merge itself")
merge_followers.register_staying(ProfileMerge, "the audit row names both profiles")
merge_followers.register_staying(MergeConflict, "a review names both profiles")
merge_followers.register_staying(
    SegmentMembershipChange, "history: who entered or left when, as it happened"
)
