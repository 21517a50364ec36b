import pytest
from django.core.exceptions import ValidationError

from profiles.resolution.normalize import (
    IDENTIFIER_MAX_LENGTH,
    InvalidIdentifier,
    normalize_email,
    normalize_identifier,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Anna@Example.COM ", "anna@example.com"),
        ("jan.de.vries+news@gmail.com", "jan.de.vries+news@gmail.com"),
    ],
)
def test_email_is_trimmed_and_lower_cased(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "null", "undefined", "not-an-email", "a@", "@b.com", "test@test.com", None]
)
def test_bad_or_placeholder_emails_are_refused(raw):
    with pytest.raises(InvalidIdentifier):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06 12345678", "+31612345678"),  # national format, default region NL
        ("+31 6 1234 5678", "+31612345678"),
        ("0031612345678", "+31612345678"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_becomes_e164(raw, expected):
    assert normalize_phone(raw) == expected


def test_phone_region_can_be_given():
    assert normalize_phone("(415) 555-2671", region="US") == "+14155552671"


def test_default_phone_region_is_configurable(settings):
    settings.CDPHUB_DEFAULT_PHONE_REGION = "US"
    assert normalize_phone("415 555 2671") == "+14155552671"


@pytest.mark.parametrize("raw", ["", "0", "12", "abc", "+31 6 123", "null", "+99 123456789"])
def test_bad_phones_are_refused(raw):
    with pytest.raises(InvalidIdentifier):
        normalize_phone(raw)


@pytest.mark.parametrize(
    "raw", ["", " ", "null", "NULL", "undefined", "anonymous", "guest", "0", "none", None, True, {}]
)
def test_junk_ids_are_refused(raw):
    with pytest.raises(InvalidIdentifier):
        normalize_identifier("user_id", raw)


def test_ids_are_trimmed_but_keep_case():
    assert normalize_identifier("user_id", "  User-42 ") == "User-42"
    assert normalize_identifier("anonymous_id", 12345) == "12345"


def test_configured_junk_values_are_refused(settings):
    settings.CDPHUB_JUNK_IDENTIFIERS = ["placeholder-user"]
    with pytest.raises(InvalidIdentifier):
        normalize_identifier("user_id", "Placeholder-User")


def test_overlong_id_is_refused():
    with pytest.raises(InvalidIdentifier, match="255"):
        normalize_identifier("device_id", "x" * 256)


@pytest.mark.parametrize(
    "address",
    [
        "user+tag@sub.domain.example",
        "a@localhost",
        "a@[127.0.0.1]",
        "a@[300.1.1.1]",
        '"quoted user"@example.com',
        "a..b@example.com",
        "a@-example.com",
        "a@exa_mple.com",
        "a@xn--bcher-kva.example",
        "a@bücher.example",
        "a@" + "b" * 64 + ".com",
        "a@example.com.",
        "a@b@c.com",
        "x" * 310 + "@e.co",
    ],
)
def test_email_check_agrees_with_djangos(address):
    # The normaliser remembers domain verdicts for speed; it must accept exactly what
    # Django's validator accepts (up to the identifier length the database keeps), the
    # domain asked twice included.
    from django.core.validators import validate_email

    def accepted(check) -> bool:
        try:
            check(address)
        except (ValidationError, InvalidIdentifier):
            return False
        return True

    expected = accepted(validate_email) and len(address) <= IDENTIFIER_MAX_LENGTH
    assert accepted(normalize_email) == expected
    assert accepted(normalize_email) == expected


# Columns that keep a normalised identifier, or a copy of one, by name.
IDENTIFIER_COLUMNS = {"value", "user_id", "anonymous_id", "identifier_value", "device_id"}


def test_every_identifier_column_holds_the_longest_identifier_accepted():
    # The normalisers refuse what the columns cannot keep, so a long identifier is refused
    # with a reason instead of failing the statement that stores it.
    from django.apps import apps
    from django.db import models

    columns = [
        (model.__name__, field.name, field.max_length)
        for model in apps.get_models()
        if model._meta.app_label in {"profiles", "crm", "audiences", "consent"}
        for field in model._meta.get_fields()
        if isinstance(field, models.CharField) and field.name in IDENTIFIER_COLUMNS
    ]
    assert ("Identity", "value", IDENTIFIER_MAX_LENGTH) in columns
    assert [c for c in columns if c[2] is not None and c[2] < IDENTIFIER_MAX_LENGTH] == []


@pytest.mark.parametrize("kind", ["email", "user_id", "anonymous_id", "device_id", "external"])
def test_identifiers_longer_than_the_column_are_refused(kind):
    long_value = "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com"
    if kind != "email":
        long_value = "x" * (IDENTIFIER_MAX_LENGTH + 1)
    assert len(long_value) > IDENTIFIER_MAX_LENGTH
    with pytest.raises(InvalidIdentifier, match="longer than 255 characters"):
        normalize_identifier(kind, long_value)
