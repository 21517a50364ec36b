"""Roles are groups with permissions. Rules are per app, so a model added later is covered."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from cdphub.pii import PII_PERMISSION

ALL = ("view", "add", "change", "delete")
EDIT = ("view", "add", "change")
VIEW = ("view",)

# The consent models a role other than the privacy officer may see: the ledger, not the
# data subject requests, the suppression list or the register (those are the privacy office's).
CONSENT_LEDGER = {"purpose", "consenttext", "consentrecord", "consentstate"}

# Sales teams decide whose CRM records a person sees: a role that edits the CRM must not
# also be able to widen its own view, so only the Sales manager role edits them. Custom fields
# shape every record's form and import: the Sales manager defines them too.
SALES_CONFIGURATION = {"crm.salesteam": VIEW, "crm.customfield": VIEW}

# role -> {app label: actions}, "only" the listed models of an app, "models" with other actions
# than their app's, and whether the role sees personal data.
ROLES: dict[str, dict] = {
    "Marketer": {
        "apps": {"profiles": EDIT, "audiences": ALL, "consent": VIEW, "crm": VIEW},
        "only": {"consent": CONSENT_LEDGER},
        "pii": True,
    },
    "Sales": {
        "apps": {"crm": ALL, "profiles": VIEW, "consent": VIEW},
        "only": {"consent": CONSENT_LEDGER},
        "models": SALES_CONFIGURATION,
        "pii": True,
    },
    "Sales manager": {
        "apps": {"crm": ALL, "profiles": VIEW, "consent": VIEW},
        "only": {"consent": CONSENT_LEDGER},
        "pii": True,
    },
    "Privacy officer": {
        "apps": {"consent": ALL, "profiles": ALL, "crm": VIEW, "audiences": VIEW, "cdphub": VIEW},
        "only": {"cdphub": {"auditentry"}},
        "pii": True,
    },
    "Data engineer": {
        "apps": {"profiles": ALL, "audiences": EDIT, "consent": VIEW, "crm": VIEW, "cdphub": VIEW},
        "only": {"consent": CONSENT_LEDGER},
        "pii": False,
    },
    "Analyst": {
        "apps": {"profiles": VIEW, "crm": VIEW, "audiences": VIEW, "consent": VIEW},
        "only": {"consent": CONSENT_LEDGER},
        "pii": False,
    },
}

# Never granted to any role: the consent ledger is append-only.
FORBIDDEN = {"consent.change_consentrecord", "consent.delete_consentrecord"}


def grants(role: str, app: str, model: str, action: str) -> bool:
    """Whether the role's matrix gives ``action`` (view, add, change, delete) on the model."""
    spec = ROLES[role]
    if app not in spec["apps"] or f"{app}.{action}_{model}" in FORBIDDEN:
        return False
    allowed_models = spec.get("only", {}).get(app)
    if allowed_models is not None and model not in allowed_models:
        return False
    return action in spec.get("models", {}).get(f"{app}.{model}", spec["apps"][app])


def roles_granting(app: str, model: str, action: str) -> list[str]:
    """The roles that may do ``action`` on the model (for a refusal to say whom to ask)."""
    return [role for role in ROLES if grants(role, app, model, action)]


def role_permissions(role: str) -> list[Permission]:
    spec = ROLES[role]
    candidates = Permission.objects.select_related("content_type").filter(
        content_type__app_label__in=spec["apps"].keys()
    )
    permissions = [
        permission
        for permission in candidates
        if grants(
            role,
            permission.content_type.app_label,
            permission.content_type.model,
            permission.codename.split("_", 1)[0],
        )
    ]
    app_label, codename = PII_PERMISSION.split(".")
    permissions = [p for p in permissions if p.codename != codename]
    if spec["pii"]:
        permissions.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return permissions


@transaction.atomic
def roles_sync() -> dict[str, int]:
    """Create or update the role groups; returns the number of permissions per role."""
    counts = {}
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        permissions = role_permissions(role)
        group.permissions.set(permissions)
        counts[role] = len(permissions)
    return counts
