"""Rectification (Art. 16) corrects each app's data through that app's own rules: registered
``rectify`` hooks, so a correction is normalised and moves identities like every other write."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import models
from django.test.utils import isolate_apps

from consent import registry
from consent.dsar import DsarError, dsar_create, dsar_process, dsar_verify
from consent.models import DataSubjectRequest
from crm.models import Contact
from crm.services import contact_create
from profiles.models import Identity
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def person():
    contact = contact_create(first_name="Marit", last_name="Oosterhuis", email="marit@example.org")
    return contact.profile


def rectify(email: str, corrections: dict) -> DataSubjectRequest:
    request = dsar_create(kind="rectification", email=email, corrections=corrections)
    dsar_verify(request=request)
    return dsar_process(request=request)


def test_a_corrected_email_is_normalised_everywhere_and_the_identity_moves(person):
    rectify("marit@example.org", {"email": " Marit.J@Example.ORG "})

    person.refresh_from_db()
    assert Contact.objects.get().email == "marit.j@example.org"
    assert person.traits["email"] == "marit.j@example.org"
    emails = set(Identity.objects.filter(kind="email").values_list("value", "profile_id"))
    assert emails == {("marit.j@example.org", person.pk)}


def test_a_corrected_phone_is_stored_in_e164(person):
    rectify("marit@example.org", {"phone": "+31 6 1234 5678"})
    assert Contact.objects.get().phone == "+31612345678"
    person.refresh_from_db()
    assert person.traits["phone"] == "+31612345678"
    assert Identity.objects.filter(kind="phone", value="+31612345678", profile=person).exists()


def test_an_invalid_correction_is_refused_when_the_request_is_made(person):
    with pytest.raises(DsarError, match="email") as refused:
        dsar_create(
            kind="rectification",
            email="marit@example.org",
            corrections={"lastName": "Jansen", "email": "not an address"},
        )
    assert refused.value.field == "corrections"
    assert not DataSubjectRequest.objects.exists()


def test_a_correction_refused_when_run_changes_nothing(person):
    request = dsar_create(
        kind="rectification", email="marit@example.org", corrections={"lastName": "Jansen"}
    )
    # stored before the checks existed: refused when run, in one transaction with the rest
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        corrections={"lastName": "Jansen", "phone": "12"}
    )
    request.refresh_from_db()
    dsar_verify(request=request)
    with pytest.raises(ValidationError):
        dsar_process(request=request)
    person.refresh_from_db()
    assert person.traits["lastName"] == "Oosterhuis"
    assert Contact.objects.get().last_name == "Oosterhuis"
    request.refresh_from_db()
    assert request.status == "in_progress"
    assert request.actions.get(action="failed").note.startswith("refused: phone:")


def test_an_email_of_another_person_is_refused(person):
    other = ProfileFactory()
    IdentityFactory(profile=other, kind="email", value="someone@example.org")
    with pytest.raises(ValidationError, match="another profile"):
        rectify("marit@example.org", {"email": "someone@example.org"})
    assert Contact.objects.get().email == "marit@example.org"


@pytest.mark.parametrize("holder", registry.holders(), ids=lambda holder: holder.label)
def test_every_holder_of_correctable_data_can_be_rectified(holder):
    assert not registry.uncorrectable_fields(holder), (
        f"{holder.label} holds {registry.uncorrectable_fields(holder)}: register a rectify hook "
        "in its app's privacy.py (through the app's own service) or say with not_rectified why "
        "its rows stay as recorded"
    )


@isolate_apps("crm")
def test_the_check_catches_a_holder_without_a_hook():
    class Newsletter(models.Model):
        email = models.EmailField()
        first_name = models.CharField(max_length=50)

        class Meta:
            app_label = "crm"

    def holder(**kwargs):
        return registry.Holder(Newsletter, find=None, erase=None, personal_fields=(), **kwargs)

    assert registry.uncorrectable_fields(holder()) == ["email", "first_name"]
    assert registry.uncorrectable_fields(holder(rectify=lambda *args: 0)) == []
    assert registry.uncorrectable_fields(holder(not_rectified="a log")) == []


def test_a_blank_correction_clears_the_value_and_adds_no_empty_identity(person):
    rectify("marit@example.org", {"lastName": "Jansen", "phone": "  "})

    person.refresh_from_db()
    assert person.traits["phone"] == "" and person.traits["lastName"] == "Jansen"
    assert not Identity.objects.filter(value="").exists()
    assert Contact.objects.get().last_name == "Jansen"
