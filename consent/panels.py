"""Consent's panel on the profile page: the person's consent per active purpose."""

from __future__ import annotations

from consent.models import ConsentState, Purpose
from profiles import panels


def consent_panel(profile, viewer: panels.Viewer) -> list[dict]:
    states = {state.purpose_id: state for state in ConsentState.objects.filter(profile=profile)}
    return [
        {
            "purpose": purpose.name,
            "status": states[purpose.pk].status if purpose.pk in states else "unknown",
            "since": states[purpose.pk].updated_at if purpose.pk in states else None,
        }
        for purpose in Purpose.objects.filter(is_active=True).order_by("name")
    ]


panels.register(
    "consent",
    title="Consent",
    template="admin/consent/profile_panel.html",
    data=consent_panel,
    order=10,
)
