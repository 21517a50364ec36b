"""Accounts from group calls: Segment's ``group(groupId, traits)`` makes the CRM company with
that group id (creating it the first time) and links the person to it (``AccountMember``).

A processing hook (``profiles.ingest.hooks``), in the processing transaction: per batch, the
group calls are folded per group id in message order (the later trait wins), the companies are
created in one statement (``ON CONFLICT`` on the group id, so two batches creating the same
account at once both find it) and updated where a trait changed something, and the links are
written in one statement that keeps each person's first and latest call.

Traits: ``name`` and ``industry`` set the company's fields, ``employees`` (a number) its size
band, as the latest call gives them (a company is named by its group id until a call names it);
every other trait is kept in ``group_traits`` (the latest value of each). The website or domain
of a call is kept as a trait, never written over a company's domain: that may be another
company's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import (
    Count,
    DateTimeField,
    DecimalField,
    IntegerField,
    Max,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from cdphub.sql import execute
from crm.models import AccountMember, Company
from profiles.ingest.hooks import ProcessedMessage

GROUP_ID_MAX = Company._meta.get_field("group_id").max_length
# group trait -> the company field it sets (text, cut to the field's length)
TEXT_FIELDS = {"name": "name", "industry": "industry"}
# Upper bounds of the size bands, in employees.
SIZE_BANDS = (
    (9, Company.Size.MICRO),
    (49, Company.Size.SMALL),
    (249, Company.Size.MEDIUM),
    (999, Company.Size.LARGE),
)

MEMBERS = AccountMember._meta.db_table
MEMBERS_UPSERT_SQL = f"""
INSERT INTO {MEMBERS} (company_id, profile_id, first_seen_at, last_seen_at)
SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::timestamptz[], %b::timestamptz[])
ON CONFLICT (company_id, profile_id) DO UPDATE SET
    first_seen_at = LEAST({MEMBERS}.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST({MEMBERS}.last_seen_at, EXCLUDED.last_seen_at)
"""  # noqa: S608 - table name from model metadata; values are parameters


def group_id_of(payload: dict) -> str:
    """The call's group id as text ('' when there is none to use)."""
    value = payload.get("groupId")
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value).strip()[:GROUP_ID_MAX]


def size_band(employees: object) -> str:
    """The size band of a number of employees ('' when it is not a number)."""
    try:
        count = int(float(employees))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return ""
    if count < 1:
        return ""
    return next((band for bound, band in SIZE_BANDS if count <= bound), Company.Size.ENTERPRISE)


def accounts_from_group_calls(messages: Sequence[ProcessedMessage]) -> None:
    """The processing hook."""
    calls = [m for m in messages if m.type == "group" and group_id_of(m.payload)]
    if calls:
        accounts_record(calls)


@transaction.atomic
def accounts_record(calls: Sequence[ProcessedMessage]) -> None:
    traits: dict[str, dict] = {}
    seen: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    for call in calls:
        group_id = group_id_of(call.payload)
        given = call.payload.get("traits")
        traits.setdefault(group_id, {}).update(given if isinstance(given, dict) else {})
        first, last = seen.get((group_id, call.profile), (call.timestamp, call.timestamp))
        seen[(group_id, call.profile)] = (min(first, call.timestamp), max(last, call.timestamp))
    companies = companies_upsert(traits)
    links = sorted(seen.items(), key=lambda item: (companies[item[0][0]], item[0][1]))
    execute(
        MEMBERS_UPSERT_SQL,
        [
            [companies[group_id] for (group_id, _), _ in links],
            [profile for (_, profile), _ in links],
            [first for _, (first, _) in links],
            [last for _, (_, last) in links],
        ],
    )


def companies_upsert(traits: dict[str, dict]) -> dict[str, int]:
    """The company of each group id, created if new, its fields and traits brought up to date
    with the calls' traits; returns their ids by group id."""
    Company.objects.bulk_create(
        [Company(group_id=group_id, name=group_id[:255]) for group_id in sorted(traits)],
        ignore_conflicts=True,
    )
    companies = list(Company.objects.select_for_update().filter(group_id__in=traits).order_by("pk"))
    changed = [company for company in companies if company_apply(company, traits[company.group_id])]
    now = timezone.now()
    for company in changed:
        company.updated_at = now  # bulk_update leaves auto_now alone
    Company.objects.bulk_update(
        changed, ["name", "industry", "size", "group_traits", "updated_at"], batch_size=500
    )
    return {company.group_id: company.pk for company in companies}


def company_apply(company: Company, traits: dict) -> bool:
    """Bring the company's fields and kept traits up to date; whether anything changed."""
    before = (company.name, company.industry, company.size, dict(company.group_traits))
    for trait, field in TEXT_FIELDS.items():
        value = traits.get(trait)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value).strip()[: Company._meta.get_field(field).max_length]
            if text:
                setattr(company, field, text)
    band = size_band(traits.get("employees"))
    if band:
        company.size = band
    kept = {
        k: v for k, v in traits.items() if k not in TEXT_FIELDS and not (k == "employees" and band)
    }
    company.group_traits = {**company.group_traits, **kept}
    return (company.name, company.industry, company.size, company.group_traits) != before


# --- Account figures ------------------------------------------------------------------------

ACTIVE_DAYS = 30
# name -> what it says, for the admin, the API schema and the rule language
ACCOUNT_FIGURES = {
    "people": "people linked to the account",
    "active_people_30d": f"of them, seen in the last {ACTIVE_DAYS} days",
    "revenue": "the lifetime value of its people, summed",
    "last_activity_at": "when one of its people was last seen",
}


def with_account_figures(companies: QuerySet[Company], now: datetime | None = None) -> QuerySet:
    """The companies annotated with their account figures (``account_<name>``), from the
    computed traits of their people: one subquery each, read through the members' index."""
    since = (now or timezone.now()) - timedelta(days=ACTIVE_DAYS)
    members = AccountMember.objects.filter(company=OuterRef("pk")).order_by().values("company")
    last_seen = Cast(KeyTextTransform("last_seen_at", "profile__computed_traits"), DateTimeField())
    money = DecimalField(max_digits=18, decimal_places=2)
    revenue = Cast(KeyTextTransform("lifetime_value", "profile__computed_traits"), money)

    def figure(rows, aggregate, output):
        return Subquery(rows.annotate(value=aggregate).values("value")[:1], output_field=output)

    return companies.annotate(
        account_people=Coalesce(figure(members, Count("pk"), IntegerField()), 0),
        account_active_people_30d=Coalesce(
            figure(
                members.alias(seen=last_seen).filter(seen__gte=since),
                Count("pk"),
                IntegerField(),
            ),
            0,
        ),
        account_revenue=figure(members, Sum(revenue), DecimalField()),
        account_last_activity_at=figure(members, Max(last_seen), DateTimeField()),
    )
