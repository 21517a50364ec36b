"""An account from group calls whose website or domain is an existing company's domain, or the
e-mail domain of its contacts: that company is suggested (never linked by itself), and accepting
makes it the account; dismissing never suggests it again. Through real collection and processing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from cdphub.models import AuditEntry
from crm.accounts import (
    SuggestionRefused,
    account_suggestion_accept,
    account_suggestion_dismiss,
)
from crm.models import EMAIL_DOMAIN, AccountMember, AccountSuggestion, Company, Contact, Deal
from crm.services import web_domain
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.services import source_create
from tests.factories import CompanyFactory, ContactFactory, DealFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    return source_create(name="App")[0]


def send(source, *messages) -> None:
    result = messages_collect(source_id=source.pk, messages=list(messages))
    assert not result.rejected, result.rejected
    pending_process()


def group(user, group_id, n=0, **traits) -> dict:
    return {
        "type": "group",
        "userId": user,
        "groupId": group_id,
        "traits": traits,
        "messageId": f"{user}-{group_id}-{n}",
        "timestamp": "2026-11-30T10:00:00Z",
    }


@pytest.fixture
def acme_in_crm():
    """Acme, as sales entered it: two people writing from acme.com."""
    acme = CompanyFactory(name="Acme Corporation", domain=None, industry="")
    ContactFactory(company=acme, email="ann@ACME.com")
    ContactFactory(company=acme, email="bob@acme.com")
    ContactFactory(company=CompanyFactory(name="Other"), email="eve@elsewhere.org")
    return acme


def test_a_website_trait_suggests_the_company_whose_contacts_write_from_it(source, acme_in_crm):
    send(source, group("ann", "acct-9", name="ACME", website="https://www.acme.com/pricing"))

    account = Company.objects.get(group_id="acct-9")
    [suggestion] = AccountSuggestion.objects.all()
    assert (suggestion.account, suggestion.company) == (account, acme_in_crm)
    assert suggestion.domain == "acme.com"
    assert suggestion.reason == "2 of its contacts write from acme.com"
    assert acme_in_crm.group_id is None  # suggested, not linked

    # The same domain again suggests nothing new.
    send(source, group("bob", "acct-9", website="acme.com"))
    assert AccountSuggestion.objects.count() == 1


def test_a_company_with_the_domain_is_suggested(source):
    beta = CompanyFactory(name="Beta", domain="beta.io")
    send(source, group("ann", "b-1", domain="BETA.io"))
    [suggestion] = AccountSuggestion.objects.all()
    assert suggestion.company == beta
    assert suggestion.reason == "its domain is beta.io"


def test_no_domain_or_no_match_suggests_nothing(source, acme_in_crm):
    send(source, group("ann", "x-1", website="not a website"), group("bob", "y-1", website="z.dev"))
    assert not AccountSuggestion.objects.exists()


def test_accepting_makes_the_company_the_account(source, acme_in_crm, admin_user):
    send(
        source,
        group("ann", "acct-9", name="ACME", industry="Retail", plan="pro", website="acme.com"),
        group("bob", "acct-9"),
    )
    suggestion = AccountSuggestion.objects.get()
    account_id = suggestion.account_id

    company = account_suggestion_accept(suggestion=suggestion, by=admin_user)

    assert company.pk == acme_in_crm.pk
    assert company.group_id == "acct-9"
    assert company.name == "Acme Corporation"  # sales' name is kept
    assert company.industry == "Retail"  # an empty field takes the account's
    assert company.group_traits == {"plan": "pro", "website": "acme.com"}
    assert AccountMember.objects.filter(company=company).count() == 2
    assert not Company.objects.filter(pk=account_id).exists()
    assert AuditEntry.objects.filter(action="account_suggestion.accept").exists()

    # Later group calls find the company by its group id.
    send(source, group("cat", "acct-9"))
    assert AccountMember.objects.filter(company=company).count() == 3


def test_accepting_is_refused_when_the_account_has_records_of_its_own(source, acme_in_crm):
    send(source, group("ann", "acct-9", website="acme.com"))
    suggestion = AccountSuggestion.objects.get()
    DealFactory(company=suggestion.account)
    with pytest.raises(SuggestionRefused, match="deals of its own"):
        account_suggestion_accept(suggestion=suggestion)
    assert Company.objects.get(pk=suggestion.account_id).group_id == "acct-9"
    assert Deal.objects.count() == 1


def test_a_dismissed_suggestion_is_not_made_again(source, acme_in_crm):
    send(source, group("ann", "acct-9", website="acme.com"))
    suggestion = account_suggestion_dismiss(suggestion=AccountSuggestion.objects.get())
    assert suggestion.status == "dismissed"
    send(
        source,
        group("ann", "acct-9", 1, website="other.com"),
        group("ann", "acct-9", 2, website="acme.com"),
    )
    assert list(AccountSuggestion.objects.values_list("status", flat=True)) == ["dismissed"]
    with pytest.raises(SuggestionRefused, match="dismissed"):
        account_suggestion_accept(suggestion=suggestion)


def test_admin_lists_and_accepts(source, acme_in_crm, admin_client):
    send(source, group("ann", "acct-9", website="acme.com"))
    suggestion = AccountSuggestion.objects.get()
    page = admin_client.get(reverse("admin:crm_company_change", args=[suggestion.account_id]))
    assert "1 open suggestion(s)" in page.content.decode()
    response = admin_client.post(
        reverse("admin:crm_accountsuggestion_changelist"),
        {"action": "accept", "_selected_action": [suggestion.pk]},
    )
    assert response.status_code == 302
    assert Company.objects.get(pk=acme_in_crm.pk).group_id == "acct-9"


def test_api_lists_accepts_and_refuses_with_409(source, acme_in_crm, api_client_with_scopes):
    send(source, group("ann", "acct-9", website="acme.com"))
    api = api_client_with_scopes("crm:read", "crm:write")
    [listed] = api.get("/api/crm/account-suggestions/").json()["results"]
    assert listed["reason"] == "2 of its contacts write from acme.com"
    url = f"/api/crm/account-suggestions/{listed['id']}/"
    DealFactory(company_id=listed["account"])
    response = api.post(f"{url}accept/")
    assert response.status_code == 409
    assert "of its own" in response.json()["message"]
    assert api.post(f"{url}dismiss/").json()["status"] == "dismissed"


def test_the_contacts_are_found_through_the_email_domain_index(acme_in_crm):
    for n in range(300):
        ContactFactory(email=f"p{n}@example{n % 30}.com")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crm_contact")
    query = Contact.objects.alias(d=EMAIL_DOMAIN).filter(d="acme.com").values("pk")
    plan = query.explain()
    assert "contact_email_domain" in plan, plan


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("https://www.Acme.com/pricing?x=1", "acme.com"),
        ("acme.co.uk", "acme.co.uk"),
        ("http://shop.acme.com:8080", "shop.acme.com"),
        ("localhost", ""),
        ("not a website", ""),
        (42, ""),
    ],
)
def test_web_domain(value, domain):
    assert web_domain(value) == domain
