"""The CDP's own rows that follow a profile merge (see profiles.resolution.followers)."""

from __future__ import annotations

from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
    SegmentMembership,
    SegmentMembershipChange,
)
from profiles.resolution import followers

followers.register(Identity, key="identities")
followers.register(Event, key="events")
# Memberships are unique per segment: those the survivor has stay behind.
followers.register(SegmentMembership, key="memberships", unique_with="segment_id")

followers.register_staying(Profile, "merged_into is the merge itself")
followers.register_staying(ProfileMerge, "the audit row names both profiles")
followers.register_staying(MergeConflict, "a review names both profiles")
followers.register_staying(
    SegmentMembershipChange, "history: who entered or left when, as it happened"
)
