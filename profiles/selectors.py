from __future__ import annotations

from profiles.models import Profile


def profile_resolve(profile_id: int) -> Profile | None:
    """The profile with this id, following merges to the surviving profile."""
    profile = Profile.objects.filter(pk=profile_id).first()
    seen = set()
    while profile is not None and profile.merged_into_id and profile.pk not in seen:
        seen.add(profile.pk)
        profile = Profile.objects.filter(pk=profile.merged_into_id).first()
    return profile
