from __future__ import annotations

from cdphub.paginators import fast_count
from profiles.models import Profile, ProfileMerge, SegmentMembership
from profiles.panels import Viewer, panels_for


def profile_resolve(profile_id: int) -> Profile | None:
    """The profile with this id, following merges to the surviving profile."""
    profile = Profile.objects.filter(pk=profile_id).first()
    seen = set()
    while profile is not None and profile.merged_into_id and profile.pk not in seen:
        seen.add(profile.pk)
        profile = Profile.objects.filter(pk=profile.merged_into_id).first()
    return profile


# Computed traits worth showing in a profile's header, in this order.
KEY_COMPUTED_TRAITS = (
    "lifetime_value",
    "order_count",
    "average_order_value",
    "last_order_at",
    "rfm_segment",
    "churn_risk",
)


def profile_overview(profile: Profile, *, pii: bool, user) -> dict:
    """Everything the profile 360 page shows to ``user``, each part one query, personal data
    masked unless ``pii``. What other apps hold about the person comes from the panels they
    register (``profiles.panels``), never from their models read here."""
    viewer = Viewer(user=user, pii=pii)
    identities = list(profile.identities.select_related("source").order_by("kind", "value"))
    return {
        "name": viewer.shown(profile.display_name)
        if profile.display_name != f"Profile {profile.pk}"
        else f"Profile {profile.pk}",
        "identities": [
            {
                "kind": identity.get_kind_display(),
                "value": viewer.shown(identity.value) if identity.is_personal else identity.value,
                "source": identity.source.name if identity.source else "",
            }
            for identity in identities
        ],
        "computed": [
            (key.replace("_", " "), profile.computed_traits[key])
            for key in KEY_COMPUTED_TRAITS
            if key in (profile.computed_traits or {})
        ],
        "event_count": fast_count(profile.events.all()),
        "segments": list(
            SegmentMembership.objects.filter(profile=profile)
            .select_related("segment")
            .order_by("segment__name")
            .values("segment_id", "segment__name", "entered_at")[:50]
        ),
        "merges": list(
            ProfileMerge.objects.filter(survivor=profile).values(
                "pk", "merged_id", "reason", "created_at", "undone_at"
            )[:20]
        ),
        "panels": panels_for(profile, viewer),
    }
