import csv
import io
from datetime import date

import pytest
from django.core.management import call_command
from django.urls import reverse

from crm import services
from crm.duplicates import duplicate_candidates, pair_score
from crm.models import Contact, ContactMerge, Deal, DuplicateCandidate
from tests import factories
from tests.bench.bench_duplicates import labelled_contacts, precision_recall

pytestmark = pytest.mark.django_db


def person(**fields):
    base = {
        "id": 1,
        "external_id": None,
        "first_name": "Anna",
        "last_name": "de Vries",
        "email": "anna@example.com",
        "phone": "+31612345678",
        "street": "Dorpsstraat 1",
        "postal_code": "1234 AB",
        "date_of_birth": date(1990, 3, 4),
    }
    return {**base, **fields}


def test_typo_and_swapped_names_still_match():
    score, reasons = pair_score(
        person(), person(id=2, first_name="de Vries", last_name="Anan", email="", phone="")
    )

    assert score >= 0.6
    assert "first and last name swapped" in reasons
    assert "same date of birth" in reasons


def test_day_month_swap_is_a_reason():
    _, reasons = pair_score(person(), person(id=2, date_of_birth=date(1990, 4, 3)))

    assert "date of birth with day and month swapped" in reasons


def test_relative_at_same_address_is_not_a_duplicate():
    score, reasons = pair_score(
        person(),
        person(id=2, first_name="Bram", email="bram@example.com", date_of_birth=date(1960, 1, 1)),
    )

    assert score < 0.6
    assert "different date of birth" in reasons


def test_precision_and_recall_on_generated_set():
    contacts, truth = labelled_contacts(400, seed=3)

    precision, recall, _ = precision_recall(contacts, truth, 0.6)

    assert precision >= 0.95
    assert recall >= 0.9


def test_find_duplicates_command_csv():
    a = factories.ContactFactory(external_id="A-1", first_name="Anna", last_name="Smit")
    b = factories.ContactFactory(email=a.email, first_name="Ana", last_name="Smit")
    factories.ContactFactory(first_name="Someone", last_name="Else")
    out = io.StringIO()

    call_command("find_duplicates", "--format", "csv", "--save", stdout=out, stderr=io.StringIO())

    rows = list(csv.reader(io.StringIO(out.getvalue().removeprefix("\ufeff"))))
    assert rows[0] == [
        "contact_a",
        "external_id_a",
        "contact_b",
        "external_id_b",
        "score",
        "reasons",
    ]
    assert [row[:4] for row in rows[1:]] == [[str(a.pk), "A-1", str(b.pk), ""]]
    assert "same e-mail" in rows[1][5]
    assert DuplicateCandidate.objects.get().status == "open"


def test_find_duplicates_csv_neutralises_formulas():
    a = factories.ContactFactory(external_id="=1+1", first_name="Zoë", last_name="Smit")
    factories.ContactFactory(email=a.email, first_name="Zoe", last_name="Smit")
    out = io.StringIO()

    call_command("find_duplicates", "--format", "csv", stdout=out)

    assert out.getvalue().startswith("\ufeffcontact_a,")
    rows = list(csv.DictReader(io.StringIO(out.getvalue().removeprefix("\ufeff"))))
    assert [row["external_id_a"] or row["external_id_b"] for row in rows] == ["'=1+1"]


def test_merge_moves_everything_and_keeps_an_audit_row(superuser):
    survivor = services.contact_create(first_name="Anna", email="anna@example.com")
    other = services.contact_create(
        first_name="Ana", email="anna.work@example.com", job_title="CFO", external_id="X-9"
    )
    deal = factories.DealFactory(contact=other)
    factories.ActivityFactory(contact=other)
    other.tags.add(factories.TagFactory(name="vip"))

    merge = services.contact_merge(survivor=survivor, merged=other, merged_by=superuser)

    survivor.refresh_from_db()
    assert not Contact.objects.filter(pk=other.pk).exists()
    assert Deal.objects.get(pk=deal.pk).contact_id == survivor.pk
    assert survivor.activities.count() == 1
    assert list(survivor.tags.values_list("name", flat=True)) == ["vip"]
    assert (survivor.job_title, survivor.external_id) == ("CFO", "X-9")  # blanks filled
    assert survivor.email == "anna@example.com"  # the survivor's own values win
    assert ContactMerge.objects.get() == merge
    assert merge.merged_data["email"] == "anna.work@example.com"
    assert merge.moved["deal"] == [deal.pk]


def test_merge_into_itself_is_refused():
    contact = factories.ContactFactory()

    with pytest.raises(services.ValidationError):
        services.contact_merge(survivor=contact, merged=contact)


def test_review_queue_merge_and_dismiss(admin_client):
    a = factories.ContactFactory(first_name="Anna", last_name="Smit")
    factories.ContactFactory(email=a.email, first_name="Ana", last_name="Smit")
    c = factories.ContactFactory(first_name="Piet", last_name="Bos", email="piet@example.com")
    factories.ContactFactory(first_name="Piet", last_name="Bos", email="piet@example.com")
    services.duplicates_refresh()
    first, second = DuplicateCandidate.objects.order_by("contact_a_id")
    url = reverse("admin:crm_duplicatecandidate_changelist")

    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"action": "merge", "_selected_action": [first.pk]})
    admin_client.post(url, {"action": "dismiss", "_selected_action": [second.pk]})

    assert not DuplicateCandidate.objects.filter(pk=first.pk).exists()
    assert ContactMerge.objects.get().survivor_id == first.contact_a_id
    assert DuplicateCandidate.objects.get(pk=second.pk).status == "dismissed"
    assert Contact.objects.count() == 3
    services.duplicates_refresh()  # a dismissed pair is not asked again
    assert DuplicateCandidate.objects.get(contact_a=c).status == "dismissed"


def test_review_queue_masks_names_for_analyst(client, user_with_role):
    a = factories.ContactFactory(first_name="Anna", last_name="Verborgen")
    factories.ContactFactory(email=a.email, first_name="Anna", last_name="Verborgen")
    services.duplicates_refresh()
    client.force_login(user_with_role("Analyst"))

    page = client.get(reverse("admin:crm_duplicatecandidate_changelist")).content.decode()

    assert "Verborgen" not in page
    assert f"Contact #{a.pk}" in page


def test_candidates_from_database():
    a = factories.ContactFactory(phone="+31612345678", first_name="Jan", last_name="Jansen")
    factories.ContactFactory(phone="+31612345678", first_name="Jan", last_name="Janssen")

    (candidate,) = duplicate_candidates()

    assert candidate.a["id"] == a.pk
    assert "same phone" in candidate.reasons
