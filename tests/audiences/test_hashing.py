import hashlib

import pytest

from audiences.hashing import hashed_email, hashed_phone, person_columns
from profiles.resolution.normalize import InvalidIdentifier


def sha(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


@pytest.mark.parametrize("destination", ["google", "meta"])
@pytest.mark.parametrize("raw", ["test@example.com", "  Test@Example.COM ", "TEST@EXAMPLE.COM\n"])
def test_emails_are_trimmed_and_lower_cased_before_hashing(destination, raw):
    assert hashed_email(destination, raw) == sha(b"test@example.com")


def test_known_sha256_vector():
    # The published SHA-256 of "test@example.com", independent of any code under test.
    assert hashed_email("google", "test@example.com") == (
        "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    )


@pytest.mark.parametrize("raw", ["+31 6 12345678", "06-12345678", "+31612345678", "0031612345678"])
def test_google_phone_is_e164_with_plus(raw):
    assert hashed_phone("google", raw) == sha(b"+31612345678")


@pytest.mark.parametrize("raw", ["+31 6 12345678", "06-12345678", "+31612345678"])
def test_meta_phone_is_digits_with_country_code_without_plus(raw):
    assert hashed_phone("meta", raw) == sha(b"31612345678")


def test_google_and_meta_phone_hashes_differ():
    assert hashed_phone("google", "+1 415 555 2671") == sha(b"+14155552671")
    assert hashed_phone("meta", "+1 415 555 2671") == sha(b"14155552671")


@pytest.mark.parametrize("bad", ["", "not-an-email", "@example.com", "a b@example.com"])
def test_bad_emails_are_refused(bad):
    with pytest.raises(InvalidIdentifier):
        hashed_email("google", bad)


def test_bad_phone_is_refused():
    with pytest.raises(InvalidIdentifier):
        hashed_phone("meta", "12")


def test_destination_headers():
    assert person_columns("google") == ["Email", "Phone", "Mobile Device ID"]
    assert person_columns("meta") == ["email", "phone", "madid"]
