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


# Deeper than this, a document is masked whole: whoever may not see personal data sees no part
# of it, and a hostile document nested a thousand levels cannot exhaust the stack.
MASK_MAX_DEPTH = 64


def mask_traits(traits: Any, depth: int = 0) -> Any:
    """A copy of a traits/properties document with personal values masked, at any depth."""
    if isinstance(traits, dict | list) and depth >= MASK_MAX_DEPTH:
        return MASK
    if isinstance(traits, dict):
        return {key: mask_trait(key, value, depth) for key, value in traits.items()}
    if isinstance(traits, list):
        return [mask_traits(item, depth + 1) for item in traits]
    return traits


def mask_trait(key: str, value: Any, depth: int = 0) -> Any:
    if not is_pii_key(key):
        return mask_traits(value, depth + 1)
    return MASK if isinstance(value, dict | list) else mask_value(value)
