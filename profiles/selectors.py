from __future__ import annotations

from cdphub.paginators import fast_count
from profiles.models import Profile
from profiles.panels import Viewer, panels_for


def profile_resolve(profile_id: int) -> Profile | None:
    """The profile with this id, following merges to the surviving profile."""
    profile = Profile.objects.filter(pk=profile_id).first()
    seen = set()
    while profile is not None and profile.merged_into_id and profile.pk not in seen:
        seen.add(profile.pk)
        profile = Profile.objects.filter(pk=profile.merged_into_id).first()
    return profile


def profile_overview(profile: Profile, *, pii: bool, user) -> dict:
    """The header of the profile 360 page and its panels, each panel one query, personal data
    masked unless ``pii``. Every panel, the hub's own included, comes from the panel registry
    (``profiles.panels``): other apps' data is never read here."""
    viewer = Viewer(user=user, pii=pii)
    panels = panels_for(profile, viewer)
    return {
        "name": viewer.shown(profile.display_name)
        if profile.display_name != f"Profile {profile.pk}"
        else f"Profile {profile.pk}",
        "event_count": fast_count(profile.events.all()),
        "has_merges": any(panel["key"] == "merges" and panel["data"] for panel in panels),
        "panels": panels,
    }
