"""The registry of the profile page's panels: each app shows what it holds about the person in
a panel it registers from its own ``panels.py`` (found by the profiles app's ``ready()``), so
the hub draws the page without importing other apps' models.

    panels.register("crm", title="CRM", template="admin/crm/profile_panel.html",
                    data=contacts_panel, order=40, permission="crm.view_contact")

``data(profile, viewer)`` returns what the template shows as ``data``; it must mask personal
data unless ``viewer.pii`` (``viewer.shown(value)`` does it) and apply the viewer's own
visibility rules (a sales team's records).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from cdphub.pii import mask_trait, mask_value
from profiles.models import ComputedTrait, Profile, ProfileMerge, SegmentMembership


@dataclass(frozen=True)
class Viewer:
    """Who looks at the profile page, and whether they may see personal data."""

    user: object
    pii: bool

    def shown(self, value):
        return value if self.pii else mask_value(value)


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    template: str
    data: Callable[[Profile, Viewer], object]
    order: int = 50
    permission: str = ""


_panels: dict[str, Panel] = {}


def register(
    key: str,
    *,
    title: str,
    template: str,
    data: Callable[[Profile, Viewer], object],
    order: int = 50,
    permission: str = "",
) -> None:
    """Add (or replace) a panel; lower ``order`` comes first; ``permission``, when given, is
    needed to see the panel at all."""
    _panels[key] = Panel(key, title, template, data, order, permission)


def registered() -> list[Panel]:
    return sorted(_panels.values(), key=lambda panel: (panel.order, panel.key))


def panels_for(profile: Profile, viewer: Viewer) -> list[dict]:
    """The panels ``viewer`` may see, in order, each with its data."""
    return [
        {
            "key": panel.key,
            "title": panel.title,
            "template": panel.template,
            "data": panel.data(profile, viewer),
        }
        for panel in registered()
        if not panel.permission or viewer.user.has_perm(panel.permission)
    ]


# --- The hub's own panels -------------------------------------------------------------------------

# Computed traits worth showing on the profile page, in this order.
KEY_COMPUTED_TRAITS = (
    "lifetime_value",
    "order_count",
    "average_order_value",
    "last_order_at",
    "rfm_score",
    "churn_risk",
)


def identities_panel(profile: Profile, viewer: Viewer) -> list[dict]:
    identities = profile.identities.select_related("source").order_by("kind", "value")
    return [
        {
            "kind": identity.get_kind_display(),
            "value": viewer.shown(identity.value) if identity.is_personal else identity.value,
            "source": identity.source.name if identity.source else "",
        }
        for identity in identities
    ]


def computed_panel(profile: Profile, viewer: Viewer) -> list[tuple[str, object]]:
    """The key built-in traits, then those defined, by their names (values a defined trait
    took from a personal property are masked for viewers without personal data access)."""
    computed = profile.computed_traits or {}
    rows = [
        (key.replace("_", " "), computed[key]) for key in KEY_COMPUTED_TRAITS if key in computed
    ]
    for name, key in ComputedTrait.objects.order_by("name").values_list("name", "key"):
        if key in computed:
            value = computed[key] if viewer.pii else mask_trait(key, computed[key])
            rows.append((name, readable(value)))
    return rows


def readable(value: object) -> object:
    """A list as its items separated by commas; other JSON as JSON."""
    if isinstance(value, list):
        return ", ".join(str(readable(item)) for item in value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return value


def segments_panel(profile: Profile, viewer: Viewer) -> list[dict]:
    memberships = SegmentMembership.objects.filter(profile=profile).order_by("segment__name")
    return list(memberships.values("segment_id", "segment__name", "entered_at")[:50])


def merges_panel(profile: Profile, viewer: Viewer) -> list[dict]:
    merges = ProfileMerge.objects.filter(survivor=profile)
    return list(merges.values("pk", "merged_id", "reason", "created_at", "undone_at")[:20])


PANELS = "admin/profiles/panels"
register(
    "identities",
    title="Identities",
    template=f"{PANELS}/identities.html",
    data=identities_panel,
    order=5,
)
register(
    "computed",
    title="Computed traits",
    template=f"{PANELS}/computed.html",
    data=computed_panel,
    order=20,
)
register(
    "segments", title="Segments", template=f"{PANELS}/segments.html", data=segments_panel, order=50
)
register("merges", title="Merges", template=f"{PANELS}/merges.html", data=merges_panel, order=70)
