"""The DMP's panel on the profile page: the anonymous visitors linked to the person."""

from __future__ import annotations

from audiences.models import Visitor
from profiles import panels


def visitors_panel(profile, viewer: panels.Viewer) -> list[dict]:
    visitors = Visitor.objects.filter(profile=profile).order_by("-last_seen_at")
    return list(visitors.values("pk", "key_kind", "key", "last_seen_at")[:20])


panels.register(
    "audiences",
    title="Visitors (DMP)",
    template="admin/audiences/profile_panel.html",
    data=visitors_panel,
    order=60,
    permission="audiences.view_visitor",
)
