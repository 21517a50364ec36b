"""A known person's visitors are linked only while advertising or personalisation consent
holds, and unlinked the moment it is withdrawn, by any way in."""

import pytest

from audiences.models import Visitor
from consent.services import consent_record, consent_withdraw
from tests.factories import IdentityFactory, ProfileFactory, VisitorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def person():
    profile = ProfileFactory()
    IdentityFactory(profile=profile, kind="anonymous_id", value="cookie-1")
    VisitorFactory(key_kind="cookie", key="cookie-1")
    return profile


def linked(profile) -> bool:
    return Visitor.objects.filter(key="cookie-1", profile=profile).exists()


def test_granting_advertising_links_and_withdrawing_unlinks(person):
    consent_record(profile=person, purpose="advertising", status="granted", method="web_form")
    assert linked(person)

    consent_withdraw(profile=person, purpose="advertising", method="api")
    assert not linked(person)


def test_other_purposes_do_not_link(person):
    consent_record(profile=person, purpose="email_marketing", status="granted", method="web_form")

    assert not linked(person)


def test_link_holds_while_one_linking_purpose_remains(person):
    consent_record(profile=person, purpose="advertising", status="granted", method="web_form")
    consent_record(profile=person, purpose="personalisation", status="granted", method="web_form")

    consent_withdraw(profile=person, purpose="advertising", method="api")

    assert linked(person)
