import pytest
from django.core.exceptions import ValidationError

from consent.hashing import suppression_hash
from consent.models import Suppression
from crm import services
from crm.models import Contact, Deal
from profiles.models import Identity, Profile
from tests import factories

pytestmark = pytest.mark.django_db


def suppress(kind, value):
    # As an erasure request leaves it: the consent app's salted hash of the identifier.
    Suppression.objects.create(identifier_kind=kind, value_hash=suppression_hash(kind, value))


def test_new_contact_creates_profile_with_identities_and_traits():
    company = factories.CompanyFactory(name="Acme")

    contact = services.contact_create(
        first_name="Eva",
        last_name="Bakker",
        email=" Eva@Example.com ",
        phone="0612345678",
        job_title="CTO",
        company=company,
    )

    profile = contact.profile
    kinds = dict(profile.identities.values_list("kind", "value"))
    assert kinds == {
        "email": "eva@example.com",
        "phone": "+31612345678",
        "crm_contact": str(contact.pk),
    }
    assert profile.traits == {
        "firstName": "Eva",
        "lastName": "Bakker",
        "email": "eva@example.com",
        "phone": "+31612345678",
        "jobTitle": "CTO",
        "lifecycleStage": "lead",
        "company": "Acme",
    }


def test_contact_joins_the_profile_that_owns_its_email():
    # given a CDP profile already known by e-mail, with traits from the website
    identity = factories.IdentityFactory(kind="email", value="known@example.com")
    identity.profile.traits = {"favouriteColour": "green", "firstName": "Old"}
    identity.profile.save()

    contact = services.contact_create(first_name="New", email="KNOWN@example.com")

    assert contact.profile_id == identity.profile_id
    assert Profile.objects.count() == 1
    traits = Profile.objects.get().traits
    assert traits["favouriteColour"] == "green"  # other sources' traits survive
    assert traits["firstName"] == "New"  # the CRM edit flows in


def test_contact_joins_the_profile_that_owns_its_phone():
    identity = factories.IdentityFactory(kind="phone", value="+31612345678")

    contact = services.contact_create(phone="+31 6 12345678", email="new@example.com")

    assert contact.profile_id == identity.profile_id
    assert Identity.objects.get(kind="email", value="new@example.com").profile_id == (
        identity.profile_id
    )


def test_update_keeps_the_same_profile_and_refreshes_traits():
    contact = services.contact_create(first_name="Eva", email="eva@example.com")
    profile_id = contact.profile_id

    services.contact_update(contact=contact, lifecycle_stage="customer", first_name="Eve")

    profile = Profile.objects.get(pk=profile_id)
    assert Contact.objects.get().profile_id == profile_id
    assert (profile.traits["firstName"], profile.traits["lifecycleStage"]) == ("Eve", "customer")
    assert Profile.objects.count() == 1


def test_contact_without_identifiers_still_gets_a_profile():
    contact = services.contact_create(first_name="Nameless")

    assert contact.profile.identities.get().kind == "crm_contact"


@pytest.mark.parametrize(
    ("fields", "field"), [({"email": "nope"}, "email"), ({"phone": "123"}, "phone")]
)
def test_bad_identifiers_are_refused_and_nothing_is_saved(fields, field):
    with pytest.raises(ValidationError) as error:
        services.contact_create(first_name="X", **fields)

    assert field in error.value.message_dict
    assert not Contact.objects.exists()
    assert not Profile.objects.exists()


def test_suppressed_person_is_not_recreated():
    suppress("email", "erased@example.com")

    assert services.contact_is_suppressed("erased@example.com", "")
    assert not services.contact_is_suppressed("other@example.com", "")
    with pytest.raises(services.ContactSuppressed):
        services.contact_create(email="Erased@Example.com")
    assert not Contact.objects.exists()


def test_suppressed_phone_is_detected():
    suppress("phone", "+31612345678")

    assert services.contact_is_suppressed("", "+31612345678")


def test_records_add_tag_is_idempotent():
    contacts = factories.ContactFactory.create_batch(2)
    queryset = Contact.objects.filter(pk__in=[c.pk for c in contacts])

    _, first = services.records_add_tag(queryset=queryset, name="vip")
    _, second = services.records_add_tag(queryset=queryset, name="vip")

    assert (first, second) == (2, 0)


def test_blank_tag_is_refused():
    with pytest.raises(ValidationError):
        services.records_add_tag(queryset=Contact.objects.all(), name="   ")


def test_moving_deals_to_a_lost_stage_loses_them():
    deal = factories.DealFactory(probability=60)
    lost = factories.StageFactory(pipeline=deal.pipeline, is_lost=True)

    services.deals_move_to_stage(queryset=Deal.objects.all(), stage=lost)

    deal.refresh_from_db()
    assert (deal.status, deal.probability, deal.closed_at is not None) == ("lost", 0, True)


def test_deal_back_to_open_stage_reopens_it():
    deal = factories.DealFactory()
    won = factories.StageFactory(pipeline=deal.pipeline, is_won=True)
    open_stage = deal.stage
    services.deal_save(deal=deal)
    deal.stage = won
    services.deal_save(deal=deal)
    assert deal.status == "won"

    deal.stage = open_stage
    services.deal_save(deal=deal)

    deal.refresh_from_db()
    assert (deal.status, deal.closed_at) == ("open", None)
