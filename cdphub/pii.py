"""Who may see personal data, and how it looks to those who may not."""

from __future__ import annotations

from typing import Any

PII_PERMISSION = "profiles.view_pii"
PII_SCOPE = "pii:read"
MASK = "•••"

# Trait keys (compared without case, "_" or "-") that hold personal data.
PII_TRAIT_KEYS = frozenset(
    {
        "email",
        "phone",
        "mobile",
        "name",
        "firstname",
        "lastname",
        "fullname",
        "username",
        "address",
        "street",
        "postalcode",
        "zip",
        "city",
        "birthday",
        "dateofbirth",
        "birthdate",
        "ip",
    }
)


def can_view_pii(user=None, auth=None) -> bool:
    """An API key needs the ``pii:read`` scope; a person needs the PII permission."""
    from cdphub.models import ApiKey

    if isinstance(auth, ApiKey):
        return auth.has_scope(PII_SCOPE)
    return bool(user is not None and user.is_authenticated and user.has_perm(PII_PERMISSION))


def mask_value(value: Any) -> str:
    if value in (None, ""):
        return ""
    text = str(value)
    if "@" in text:
        return f"{text[:1]}{MASK}@{MASK}"
    return f"{text[:1]}{MASK}" if len(text) > 3 else MASK


def is_pii_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in PII_TRAIT_KEYS


def mask_traits(traits: Any) -> Any:
    """A copy of a traits/properties document with personal values masked, at any depth."""
    if isinstance(traits, dict):
        return {key: mask_trait(key, value) for key, value in traits.items()}
    if isinstance(traits, list):
        return [mask_traits(item) for item in traits]
    return traits


def mask_trait(key: str, value: Any) -> Any:
    if not is_pii_key(key):
        return mask_traits(value)
    return MASK if isinstance(value, dict | list) else mask_value(value)
