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
    masked unless ``pii``; CRM contacts only if the user's sales team may see them. Other apps'
    data is read through their models and selectors, never written here."""
    from audiences.models import Visitor
    from cdphub.paginators import fast_count
    from cdphub.pii import mask_value
    from consent.models import ConsentState, Purpose
    from profiles.models import ProfileMerge, SegmentMembership

    def shown(value):
        return value if pii else mask_value(value)

    identities = list(profile.identities.select_related("source").order_by("kind", "value"))
    states = {state.purpose_id: state for state in ConsentState.objects.filter(profile=profile)}
    return {
        "name": shown(profile.display_name)
        if profile.display_name != f"Profile {profile.pk}"
        else f"Profile {profile.pk}",
        "identities": [
            {
                "kind": identity.get_kind_display(),
                "value": shown(identity.value) if identity.is_personal else identity.value,
                "source": identity.source.name if identity.source else "",
            }
            for identity in identities
        ],
        "computed": [
            (key.replace("_", " "), profile.computed_traits[key])
            for key in KEY_COMPUTED_TRAITS
            if key in (profile.computed_traits or {})
        ],
        "consent": [
            {
                "purpose": purpose.name,
                "status": states[purpose.pk].status if purpose.pk in states else "unknown",
                "since": states[purpose.pk].updated_at if purpose.pk in states else None,
            }
            for purpose in Purpose.objects.filter(is_active=True).order_by("name")
        ],
        "event_count": fast_count(profile.events.all()),
        "contacts": profile_contacts(profile, user, shown),
        "segments": list(
            SegmentMembership.objects.filter(profile=profile)
            .select_related("segment")
            .order_by("segment__name")
            .values("segment_id", "segment__name", "entered_at")[:50]
        ),
        "visitors": list(
            Visitor.objects.filter(profile=profile).values("pk", "key_kind", "key", "last_seen_at")[
                :20
            ]
        ),
        "merges": list(
            ProfileMerge.objects.filter(survivor=profile).values(
                "pk", "merged_id", "reason", "created_at", "undone_at"
            )[:20]
        ),
    }


def profile_contacts(profile, user, shown) -> list[dict]:
    """The profile's CRM contacts the user sees; a company out of their sight is not named."""
    from crm.models import OUT_OF_SIGHT, Contact
    from crm.selectors import links_out_of_sight, visible_to

    contacts = list(
        visible_to(user, Contact.objects.filter(profile=profile)).select_related("company")[:10]
    )
    hidden_companies = links_out_of_sight(user, Contact, contacts).get("company", frozenset())
    return [
        {
            "pk": c.pk,
            "name": shown(c.full_name or c.email),
            "stage": c.get_lifecycle_stage_display(),
            "company": ""
            if c.company is None
            else OUT_OF_SIGHT
            if c.company_id in hidden_companies
            else c.company.name,
        }
        for c in contacts
    ]
