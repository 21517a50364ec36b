"""The CRM's panel on the profile page: the person's contacts the viewer's sales team sees."""

from __future__ import annotations

from crm.models import OUT_OF_SIGHT, Contact
from crm.selectors import links_out_of_sight, visible_to
from profiles import panels


def contacts_panel(profile, viewer: panels.Viewer) -> list[dict]:
    """The profile's CRM contacts the viewer sees; a company out of their sight is not named."""
    contacts = list(
        visible_to(viewer.user, Contact.objects.filter(profile=profile)).select_related("company")[
            :10
        ]
    )
    hidden = links_out_of_sight(viewer.user, Contact, contacts).get("company", frozenset())
    return [
        {
            "pk": c.pk,
            "name": viewer.shown(c.full_name or c.email),
            "stage": c.get_lifecycle_stage_display(),
            "company": ""
            if c.company is None
            else OUT_OF_SIGHT
            if c.company_id in hidden
            else c.company.name,
        }
        for c in contacts
    ]


panels.register(
    "crm",
    title="CRM",
    template="admin/crm/profile_panel.html",
    data=contacts_panel,
    order=40,
    permission="crm.view_contact",
)
