"""Accounts from group calls, through the real collection and processing path: the company with
the group id made or found, its traits mapped, the person linked (several people to one account,
one person to several), merges, erasure, the ``account`` leaf of the rule language, the company
page and the profile page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from consent.dsar import dsar_create, dsar_process, dsar_verify
from crm.accounts import size_band
from crm.models import AccountMember, Company
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Identity, Profile
from profiles.resolution.merges import profile_merge
from profiles.segments.computed import computed_traits_update
from profiles.segments.rules import rule_errors, rule_queryset
from profiles.services import source_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    return source_create(name="App")[0]


def send(source, *messages) -> None:
    result = messages_collect(source_id=source.pk, messages=list(messages))
    assert not result.rejected, result.rejected
    pending_process()


def group(user, group_id, n=0, timestamp="2026-11-30T10:00:00Z", **traits) -> dict:
    return {
        "type": "group",
        "userId": user,
        "groupId": group_id,
        "traits": traits,
        "messageId": f"{user}-{group_id}-{n}",
        "timestamp": timestamp,
    }


def profile_of(user: str) -> Profile:
    return Identity.objects.get(kind="user_id", value=user).profile


def test_a_group_call_makes_the_account_and_links_the_person(source):
    send(
        source,
        group("ann", "acme-1", name="Acme", industry="Retail", employees=120, plan="enterprise"),
    )
    acme = Company.objects.get(group_id="acme-1")
    assert (acme.name, acme.industry, acme.size) == ("Acme", "Retail", "50-249")
    assert acme.group_traits == {"plan": "enterprise"}
    [member] = AccountMember.objects.all()
    assert (member.company, member.profile) == (acme, profile_of("ann"))

    # Later calls: another person at the account, new traits, an older call out of order.
    send(
        source,
        group("bob", "acme-1", plan="pro", website="acme.example"),
        group("ann", "acme-1", 1, timestamp="2026-11-01T10:00:00Z"),
        group("ann", "beta-2", name="Beta"),
    )
    acme.refresh_from_db()
    assert acme.name == "Acme"  # a call without a name keeps it
    assert acme.group_traits == {"plan": "pro", "website": "acme.example"}
    assert acme.domain is None  # a website is kept as a trait, never made the domain
    assert Company.objects.count() == 2
    assert set(acme.members.values_list("profile__identities__value", flat=True)) >= {
        "ann",
        "bob",
    }
    ann = AccountMember.objects.get(company=acme, profile=profile_of("ann"))
    assert ann.first_seen_at.month == 11 and ann.first_seen_at.day == 1
    assert ann.last_seen_at.day == 30
    assert set(profile_of("ann").account_members.values_list("company__name", flat=True)) == {
        "Acme",
        "Beta",
    }


def test_an_existing_company_is_found_by_the_group_id_set_on_it(source):
    crm_company = Company.objects.create(name="Acme Corporation", domain="acme.example")
    crm_company.group_id = "acme-1"
    crm_company.save()
    send(source, group("ann", "acme-1", industry="Retail"))
    crm_company.refresh_from_db()
    assert (crm_company.name, crm_company.industry) == ("Acme Corporation", "Retail")
    assert Company.objects.count() == 1


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"employees": "12"}, ("acme-1", "10-49", {})),
        ({"employees": "a few"}, ("acme-1", "", {"employees": "a few"})),
        ({"employees": 0, "name": ""}, ("acme-1", "", {"employees": 0})),
        ({"name": {"nested": True}}, ("acme-1", "", {})),
        ({"name": "x" * 300}, ("x" * 255, "", {})),
    ],
)
def test_traits_that_do_not_fit_a_field_are_kept_or_left(source, traits, expected):
    send(source, group("ann", "acme-1", **traits))
    acme = Company.objects.get(group_id="acme-1")
    assert (acme.name, acme.size, acme.group_traits) == expected


def test_a_group_call_without_a_usable_group_id_makes_no_account(source):
    send(source, {**group("ann", 42), "messageId": "numeric"})  # a number is an id too
    assert Company.objects.filter(group_id="42").exists()
    result = messages_collect(
        source_id=source.pk, messages=[{**group("ann", ""), "messageId": "empty"}]
    )
    assert result.rejected  # collection refuses a group call without a groupId
    pending_process()
    assert Company.objects.count() == 1


def test_size_bands():
    assert [size_band(n) for n in (1, 9, 10, 249, 250, 1000, 10**9)] == [
        "1-9",
        "1-9",
        "10-49",
        "50-249",
        "250-999",
        "1000+",
        "1000+",
    ]
    assert size_band(None) == size_band("") == size_band(float("nan")) == ""


def test_the_accounts_follow_a_merge(source):
    send(source, group("ann", "acme-1"), group("ann-work", "acme-1"), group("ann-work", "beta-2"))
    survivor, merged = profile_of("ann"), profile_of("ann-work")
    profile_merge(survivor_id=survivor.pk, merged_id=merged.pk, reason="same person")
    assert set(survivor.account_members.values_list("company__group_id", flat=True)) == {
        "acme-1",
        "beta-2",
    }


def test_an_erasure_removes_the_link_and_keeps_the_company(source):
    send(source, group("ann", "acme-1", name="Acme"), group("bob", "acme-1"))
    request = dsar_create(kind="erasure", user_id="ann")
    dsar_verify(request=request)
    dsar_process(request=request)
    acme = Company.objects.get(group_id="acme-1")
    assert acme.name == "Acme"
    assert list(acme.members.values_list("profile_id", flat=True)) == [profile_of("bob").pk]


def test_the_account_leaf_selects_people_by_their_accounts(source):
    send(
        source,
        group("ann", "acme-1", industry="Retail", plan="enterprise"),
        group("bob", "beta-2", industry="Travel", plan="free"),
        group("cid", "beta-2"),
    )
    enterprise = {"account": "trait.plan", "op": "eq", "value": "enterprise"}
    assert rule_errors(enterprise) == []
    people = set(rule_queryset(enterprise).values_list("identities__value", flat=True))
    assert people == {"ann"}
    travel = {"account": "industry", "op": "in", "value": ["Travel", "Media"]}
    people = set(rule_queryset(travel).values_list("identities__value", flat=True))
    assert people == {"bob", "cid"}
    anywhere = {"account": "group_id", "op": "exists"}
    assert rule_queryset(anywhere).count() == 3

    assert "unknown account field 'plan'" in str(rule_errors({"account": "plan", "value": "x"}))
    assert rule_errors({"account": "trait.", "value": "x"})
    assert rule_errors({"account": "trait.a__b", "value": "x"})
    assert "compare with strings" in str(rule_errors({"account": "industry", "value": 3}))


def test_the_company_page_lists_its_people_and_the_profile_page_its_accounts(source, admin_client):
    send(source, group("ann", "acme-1", name="Acme", plan="pro"))
    acme = Company.objects.get(group_id="acme-1")
    ann = profile_of("ann")
    page = admin_client.get(reverse("admin:crm_company_change", args=[acme.pk])).content.decode()
    assert "people at this account" in page.lower()
    assert f"profile #{ann.pk}" in page
    assert "pro" in page  # the kept traits
    page = admin_client.get(reverse("admin:profiles_profile_change", args=[ann.pk]))
    html = page.content.decode()
    assert "Accounts" in html
    assert reverse("admin:crm_company_change", args=[acme.pk]) in html


def test_the_api_gives_the_group_id_and_traits_and_refuses_a_taken_group_id(
    source, api_client_with_scopes
):
    send(source, group("ann", "acme-1", plan="pro"))
    client = api_client_with_scopes("crm:read", "crm:write")
    [company] = client.get("/api/crm/companies/").json()["results"]
    assert (company["group_id"], company["group_traits"]) == ("acme-1", {"plan": "pro"})
    taken = client.post("/api/crm/companies/", {"name": "Other", "group_id": "acme-1"})
    assert taken.status_code == 400 and "group_id" in taken.json()["errors"]
    blank = client.post("/api/crm/companies/", {"name": "Blank", "group_id": ""})
    assert blank.status_code == 201 and blank.json()["group_id"] is None


def days_ago(days: int) -> str:
    return (timezone.now() - timedelta(days=days)).isoformat()


def test_account_figures_come_from_its_peoples_computed_traits(source, api_client_with_scopes):
    """Two people at Acme, one active (an order this week), one last seen two months ago;
    one at Beta: the figures, over the API and in a rule."""
    order = {"type": "track", "event": "Order Completed", "properties": {"revenue": 40}}
    send(
        source,
        group("ann", "acme-1", timestamp=days_ago(3), plan="pro"),
        {**order, "userId": "ann", "messageId": "o-1", "timestamp": days_ago(2)},
        group("bob", "acme-1", timestamp=days_ago(60)),
        group("cid", "beta-2", timestamp=days_ago(1), plan="pro"),
    )
    computed_traits_update(profile_ids=list(Profile.objects.values_list("pk", flat=True)))
    client = api_client_with_scopes("crm:read")
    companies = {c["group_id"]: c for c in client.get("/api/crm/companies/").json()["results"]}
    acme = companies["acme-1"]["account"]
    assert (acme["people"], acme["active_people_30d"], acme["revenue"]) == (2, 1, 40)
    assert acme["last_activity_at"].startswith(days_ago(2)[:10])
    assert companies["beta-2"]["account"]["revenue"] == 0  # no order: a value of 0

    busy_pro = {
        "all": [
            {"account": "trait.plan", "op": "eq", "value": "pro"},
            {"account": "people", "op": "gte", "value": 2},
        ]
    }
    assert rule_errors(busy_pro) == []
    people = set(rule_queryset(busy_pro).values_list("identities__value", flat=True))
    assert people == {"ann", "bob"}
    active = {"account": "active_people_30d", "op": "gt", "value": 0}
    assert rule_queryset(active).count() == 3
    assert "compares with a number" in str(rule_errors({"account": "people", "value": "2"}))
