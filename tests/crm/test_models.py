import pytest
from django.db import IntegrityError

from crm.models import OUT_OF_SIGHT, Contact
from tests import factories

pytestmark = pytest.mark.django_db


def test_deal_probability_above_100_is_refused():
    with pytest.raises(IntegrityError, match="deal_probability_pct"):
        factories.DealFactory(probability=101)


def test_deal_amount_may_not_be_negative():
    with pytest.raises(IntegrityError, match="deal_amount_not_negative"):
        factories.DealFactory(amount=-1)


def test_stage_cannot_be_won_and_lost():
    with pytest.raises(IntegrityError, match="stage_not_won_and_lost"):
        factories.StageFactory(is_won=True, is_lost=True)


def test_stage_names_are_unique_per_pipeline():
    stage = factories.StageFactory(name="Proposal")
    factories.StageFactory(name="Proposal")  # another pipeline: fine
    with pytest.raises(IntegrityError, match="stage_name_per_pipeline"):
        factories.StageFactory(name="Proposal", pipeline=stage.pipeline)


def test_company_domain_is_unique():
    factories.CompanyFactory(domain="acme.example")
    with pytest.raises(IntegrityError):
        factories.CompanyFactory(domain="acme.example")


def test_contact_external_id_is_unique():
    factories.ContactFactory(external_id="X-1")
    with pytest.raises(IntegrityError):
        factories.ContactFactory(external_id="X-1")


def test_contact_name_is_hidden_when_marked_masked():
    contact = factories.ContactFactory(first_name="Anna", last_name="Smit")
    assert str(contact) == "Anna Smit"
    contact.pii_masked = True
    assert str(contact) == f"Contact {contact.pk}"
    assert str(Contact.objects.get(pk=contact.pk)) == "Anna Smit"


def test_every_record_with_a_visibility_rule_goes_nameless_out_of_sight(hidden_records):
    for model, record in hidden_records.items():
        assert str(record) != OUT_OF_SIGHT, model
        record.out_of_sight = True

        assert str(record) == OUT_OF_SIGHT, model


def test_contacts_have_no_pattern_ops_index():
    """Django adds a ``varchar_pattern_ops`` index beside every indexed or unique text column
    (for ``LIKE 'prefix%'``); no query of cdphub uses them on contacts, and each contact
    written (100,000 in an import) would update them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'crm_contact'"
            " AND indexdef LIKE '%%pattern_ops%%'"
        )
        assert cursor.fetchall() == []
