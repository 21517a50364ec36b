"""The CRM's panels on the profile page: the person's contacts the viewer's sales team sees,
and the person's accounts (the companies of their group calls)."""

from __future__ import annotations

from crm.models import OUT_OF_SIGHT, AccountMember, Company, Contact
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


def accounts_panel(profile, viewer: panels.Viewer) -> list[dict]:
    """The companies the person belongs to, latest first; one out of the viewer's sight is
    not named."""
    members = list(AccountMember.objects.filter(profile=profile).select_related("company")[:10])
    companies = Company.objects.filter(pk__in=[m.company_id for m in members])
    seen = set(visible_to(viewer.user, companies).values_list("pk", flat=True))
    return [
        {
            "pk": m.company_id if m.company_id in seen else None,
            "name": m.company.name if m.company_id in seen else OUT_OF_SIGHT,
            "group_id": m.company.group_id if m.company_id in seen else "",
            "last_seen_at": m.last_seen_at,
        }
        for m in members
    ]


panels.register(
    "accounts",
    title="Accounts",
    template="admin/crm/accounts_panel.html",
    data=accounts_panel,
    order=41,
    permission="crm.view_company",
)
