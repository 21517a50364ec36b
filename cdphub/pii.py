"""Who may see personal data, and how it looks to those who may not."""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings

PII_PERMISSION = "profiles.view_pii"
PII_SCOPE = "pii:read"
MASK = "•••"

# Keys holding personal data, matched (as regular expressions, searched) against the key
# lower-cased without "_", "-", "." or spaces: "emailAddress", "billing_email", "phone_number",
# "surname", "shippingAddress". CDPHUB_PII_KEY_PATTERNS adds patterns of one's own.
PII_KEY_PATTERNS = (
    r"e?mail",
    r"phone|mobile|msisdn|^tel$|telephone|^fax",
    r"^(first|last|middle|given|family|full|sur|user|nick|maiden|display|contact|customer)?name$",
    r"address|street|housenumber|postalcode|postcode|^zip(code)?$|^city$",
    r"birth|^dob$|^age$",
    r"^ip$|^ipaddress$|^ipv[46]$",
    r"externalid|passport|nationalid|^ssn$|socialsecurity|^iban$|taxid|driverslicen[cs]e",
)
# Values that are personal whatever their key: an e-mail address, or a phone number written
# the way people write them (international +..., or a national number starting with 0).
EMAIL_IN_TEXT = re.compile(r"[^@\s<>()\[\],;:\"']+@[^@\s<>()\[\],;:\"']+\.[A-Za-z]{2,}")
PHONE_IN_TEXT = re.compile(r"(?<![\w+(])\(?(?:\+|00|0)\d[\d\s().\-/]{6,}\d")
PHONE_MIN_DIGITS = 8


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
    return bool(_key_pattern().search(_normalised_key(key)))


def _normalised_key(key: str) -> str:
    return re.sub(r"[\s_.\-]", "", str(key).lower())


def _key_pattern() -> re.Pattern:
    return _compiled(tuple(settings.CDPHUB_PII_KEY_PATTERNS))


@functools.lru_cache(maxsize=4)
def _compiled(configured: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{pattern})" for pattern in (*PII_KEY_PATTERNS, *configured)))


def looks_personal(value: Any) -> bool:
    """A string that is an e-mail address or a phone number, wherever it is found (a user id
    that is an e-mail, a property holding a phone number)."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return any(match.group(0) == text for match in _personal_matches(text))


def _personal_matches(text: str):
    yield from EMAIL_IN_TEXT.finditer(text)
    for match in PHONE_IN_TEXT.finditer(text):
        if sum(c.isdigit() for c in match.group(0)) >= PHONE_MIN_DIGITS:
            yield match


def mask_text(text: str) -> str:
    """``text`` with every e-mail address and phone number in it masked."""
    if looks_personal(text):
        return mask_value(text.strip())
    for match in sorted(_personal_matches(text), key=lambda m: m.start(), reverse=True):
        text = text[: match.start()] + mask_value(match.group(0)) + text[match.end() :]
    return text


# Deeper than this, a document is masked whole: whoever may not see personal data sees no part
# of it, and a hostile document nested a thousand levels cannot exhaust the stack.
MASK_MAX_DEPTH = 64


# Keys that are not personal in event properties, though they are in traits: a bare "name" there
# is what the event is about (a product, a page, a screen, a plan: Segment's e-commerce and page
# specs), while a person's name comes as firstName, lastName, fullName, customerName. Its value is
# still masked when it is an e-mail or a phone number, like any text.
PROPERTY_KEYS_NOT_PERSONAL = frozenset({"name"})


def mask_traits(traits: Any, depth: int = 0, *, not_personal: frozenset = frozenset()) -> Any:
    """A copy of a traits/properties document with personal values masked, at any depth;
    ``not_personal`` keys are kept (their values still masked if they are e-mails or phones)."""
    if isinstance(traits, dict | list) and depth >= MASK_MAX_DEPTH:
        return MASK
    if isinstance(traits, dict):
        return {
            key: mask_trait(key, value, depth, not_personal=not_personal)
            for key, value in traits.items()
        }
    if isinstance(traits, list):
        return [mask_traits(item, depth + 1, not_personal=not_personal) for item in traits]
    return mask_text(traits) if isinstance(traits, str) else traits


def mask_trait(key: str, value: Any, depth: int = 0, *, not_personal: frozenset = frozenset()):
    if key in not_personal or not is_pii_key(key):
        return mask_traits(value, depth + 1, not_personal=not_personal)
    return MASK if isinstance(value, dict | list) else mask_value(value)


def mask_properties(properties: Any) -> Any:
    """Event properties with personal values masked (products and pages keep their names)."""
    return mask_traits(properties, not_personal=PROPERTY_KEYS_NOT_PERSONAL)


def mask_json(field: str, value: Any) -> Any:
    """The JSON field ``field`` of a record masked: a ``properties`` field holds event
    properties, any other a document of traits."""
    return mask_properties(value) if field == "properties" else mask_traits(value)
