"""Normalisation of identifiers: one canonical value per person and kind, junk refused."""

from __future__ import annotations

import functools
import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from cdphub.pii import looks_personal

# Values SDKs, forms and tag managers send when they know nothing; they must never become keys,
# or every anonymous visitor would merge into one profile.
JUNK_VALUES = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "nan",
        "anonymous",
        "anon",
        "guest",
        "unknown",
        "n/a",
        "na",
        "0",
        "-1",
        "test",
        "[object object]",
        "test@test.com",
        "test@example.com",
        "noreply@example.com",
        "no-reply@example.com",
        "email@example.com",
        "user@example.com",
        "a@a.com",
    }
)


class AddressValidator(EmailValidator):
    """Django's e-mail check, made cheap enough for imports of millions of rows: each domain's
    verdict is remembered (addresses share a few domains, and the domain pattern is the costly
    half) and the user-part pattern is compiled up front rather than behind a lazy proxy."""

    user_regex = re.compile(EmailValidator.user_regex.pattern, EmailValidator.user_regex.flags)

    def validate_domain_part(self, domain_part: str) -> bool:
        return domain_is_valid(domain_part)


@functools.lru_cache(maxsize=4096)
def domain_is_valid(domain: str) -> bool:
    return EmailValidator().validate_domain_part(domain)


validate_email = AddressValidator()


# The longest identifier value stored (``Identity.value`` and every column that keeps a copy of
# one): a longer value is refused here, once, for every path that brings identifiers in.
IDENTIFIER_MAX_LENGTH = 255


class InvalidIdentifier(ValueError):
    """An identifier value that is malformed or junk; the message says which and why."""


def is_junk(value: str) -> bool:
    return value.strip().lower() in junk_values()


def junk_values() -> frozenset[str]:
    """The built-in placeholders and the configured ones (CDPHUB_JUNK_IDENTIFIERS), lower-cased."""
    return _junk_values(tuple(settings.CDPHUB_JUNK_IDENTIFIERS))


@functools.lru_cache(maxsize=4)
def _junk_values(configured: tuple[str, ...]) -> frozenset[str]:
    # Built once per configuration, not per identifier: processing checks every identifier.
    return JUNK_VALUES | {junk.strip().lower() for junk in configured}


def normalize_email(value: object) -> str:
    text = str(value or "").strip().lower()
    if is_junk(text):
        raise InvalidIdentifier(f"e-mail {value!r} is a placeholder, not an address")
    try:
        validate_email(text)
    except ValidationError:
        raise InvalidIdentifier(f"e-mail {value!r} is not a valid address") from None
    return _within_length("e-mail", text)


class PhoneNotValid(InvalidIdentifier):
    """A number of a possible length for its country, in no range its numbering plan assigns
    (a reserved range, or one newer than the metadata). Not an identifier: fillers such as
    +31 6 00000000 would join strangers into one profile. A CRM record may keep it as given
    (``e164``), with a warning."""

    def __init__(self, message: str, e164: str):
        super().__init__(message)
        self.e164 = e164


def normalize_phone(value: object, region: str | None = None) -> str:
    """Phone number in E.164 (``+31612345678``); numbers without ``+`` use the default region."""
    text = str(value or "").strip()
    if is_junk(text):
        raise InvalidIdentifier(f"phone {value!r} is a placeholder, not a number")
    try:
        number = phonenumbers.parse(text, region or settings.CDPHUB_DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier(f"phone {value!r} is not a phone number") from None
    e164 = _within_length(
        "phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    )
    if not phonenumbers.is_valid_number(number):
        message = f"phone {value!r} is not a valid phone number"
        if phonenumbers.is_possible_number(number):
            raise PhoneNotValid(message, e164)
        raise InvalidIdentifier(message)
    return e164


def normalize_opaque_id(value: object, *, label: str = "id") -> str:
    """User ids, anonymous ids, device ids: kept as sent (trimmed), junk refused."""
    if value is None or isinstance(value, bool | dict | list):
        raise InvalidIdentifier(f"{label} {value!r} is not an identifier")
    text = str(value).strip()
    if is_junk(text):
        raise InvalidIdentifier(f"{label} {value!r} is a placeholder, not an identifier")
    return _within_length(label, text)


def normalize_identifier(kind: str, value: object) -> str:
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value)
    return normalize_opaque_id(value, label=kind.replace("_", " "))


def _within_length(label: str, text: str) -> str:
    if len(text) > IDENTIFIER_MAX_LENGTH:
        raise InvalidIdentifier(f"{label} is longer than {IDENTIFIER_MAX_LENGTH} characters")
    return text


OPAQUE_KINDS = ("user_id", "anonymous_id", "device_id", "external", "crm_contact")
# Kinds searched for those who may not see personal data (external ids are personal).
PSEUDONYMOUS_KINDS = ("user_id", "anonymous_id", "device_id")


def lookup_candidates(term: str, *, personal: bool = True) -> list[tuple[str, str]]:
    """(kind, value) pairs a search term may be stored as: an id as typed, an e-mail, an E.164
    phone. Pairs, so the look-up uses the (kind, value) unique index. Without ``personal``
    (the person searching may not see personal data) nothing personal is looked up: finding a
    profile by an e-mail would confirm the e-mail to someone who may not see it."""
    term = term.strip()
    if not personal:
        return [] if looks_personal(term) else [(kind, term) for kind in PSEUDONYMOUS_KINDS]
    candidates = [(kind, term) for kind in OPAQUE_KINDS]
    for kind, normalizer in (("email", normalize_email), ("phone", normalize_phone)):
        try:
            candidates.append((kind, normalizer(term)))
        except InvalidIdentifier:
            continue
    return candidates


def lookup_condition(term: str, prefix: str = "", *, personal: bool = True):
    """A ``Q`` matching identities (at ``prefix``) stored under any form of ``term``."""
    from django.db.models import Q

    condition = Q(pk__in=[])
    for kind, value in lookup_candidates(term, personal=personal):
        condition |= Q(**{f"{prefix}kind": kind, f"{prefix}value": value})
    return condition
