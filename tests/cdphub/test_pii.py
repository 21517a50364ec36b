"""What counts as personal data when masking: keys by pattern (configurable), and values that
are e-mail addresses or phone numbers whatever key they sit under."""

from __future__ import annotations

import pytest

from cdphub.pii import MASK, is_pii_key, looks_personal, mask_traits
from profiles.models import Identity
from tests.factories import IdentityFactory


@pytest.mark.parametrize(
    "key",
    [
        "email",
        "emailAddress",
        "billing_email",
        "phone_number",
        "mobilePhone",
        "surname",
        "firstName",
        "last-name",
        "full_name",
        "billing_address",
        "shippingAddress",
        "postcode",
        "zipCode",
        "date_of_birth",
        "birthday",
        "ip",
        "ipAddress",
        "externalIds",
        "iban",
    ],
)
def test_personal_keys_are_recognised_by_pattern(key):
    assert is_pii_key(key)


@pytest.mark.parametrize(
    "key", ["event", "productName_sku", "revenue", "plan", "category", "url", "zipped", "tip"]
)
def test_ordinary_keys_are_not_personal(key):
    assert not is_pii_key(key)


def test_configured_key_patterns_are_added(settings):
    settings.CDPHUB_PII_KEY_PATTERNS = [r"loyalty_?card"]
    assert is_pii_key("loyaltyCard")


@pytest.mark.parametrize(
    "value, personal",
    [
        ("anna@example.com", True),
        (" Anna.de.Vries@Example.CO.UK ", True),
        ("+31 6 1234 5678", True),
        ("0612345678", True),
        ("(020) 123-4567", True),
        ("ORDER-2026-000123", False),
        ("20261130", False),
        ("42", False),
        ("https://shop.example.com/jackets", False),
        (12345678, False),
    ],
)
def test_values_that_are_e_mails_or_phones_are_personal(value, personal):
    assert looks_personal(value) is personal


def test_mask_traits_masks_by_key_pattern_and_by_value():
    document = {
        "emailAddress": "anna@example.com",
        "surname": "de Vries",
        "userId": "anna@example.com",
        "note": "call +31 6 1234 5678",
        "contact": {"phone_number": "0612345678", "plan": "pro"},
        "externalIds": [{"id": "crm-55", "type": "crm"}],
        "items": ["anna@example.com", "sku-1"],
        "plan": "pro",
    }
    masked = mask_traits(document)
    text = str(masked)
    assert "anna@example.com" not in text
    assert "Vries" not in text
    assert "1234" not in text
    assert "crm-55" not in text
    assert masked["plan"] == "pro"
    assert masked["contact"]["plan"] == "pro"
    assert masked["items"][1] == "sku-1"
    assert masked["externalIds"] == MASK


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kind, value, personal",
    [
        ("email", "anna@example.com", True),
        ("phone", "+31612345678", True),
        ("external", "crm:55", True),
        ("user_id", "anna@example.com", True),
        ("user_id", "u-123", False),
        ("anonymous_id", "4f0c-aa", False),
    ],
)
def test_identity_is_personal_by_kind_or_by_value(kind, value, personal):
    assert IdentityFactory(kind=kind, value=value).is_personal is personal
    assert Identity.value_is_personal(kind, value) is personal
