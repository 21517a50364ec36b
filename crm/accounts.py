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
company's. Instead, the companies with that domain, or whose contacts write from it, are
suggested (``AccountSuggestion``) for someone in sales to accept or dismiss."""

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

from cdphub.audit import audit_record
from cdphub.sql import execute
from crm.models import EMAIL_DOMAIN, AccountMember, AccountSuggestion, Company, Contact
from crm.services import web_domain
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
    domains_before = {company.pk: account_domain(company.group_traits) for company in companies}
    changed = [company for company in companies if company_apply(company, traits[company.group_id])]
    now = timezone.now()
    for company in changed:
        company.updated_at = now  # bulk_update leaves auto_now alone
    Company.objects.bulk_update(
        changed, ["name", "industry", "size", "group_traits", "updated_at"], batch_size=500
    )
    for company in changed:
        domain = account_domain(company.group_traits)
        if domain and domain != domains_before[company.pk]:
            account_suggestions_make(account=company, domain=domain)
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


# --- Suggestions: the existing company an account may be ------------------------------------

DOMAIN_TRAITS = ("domain", "website")


def account_domain(group_traits: dict) -> str:
    """The web domain an account's group calls gave ('' when none)."""
    for trait in DOMAIN_TRAITS:
        domain = web_domain(group_traits.get(trait))
        if domain:
            return domain
    return ""


def account_suggestions_make(*, account: Company, domain: str) -> int:
    """Suggest the companies with ``domain``, or with contacts writing from it, for the
    account (each pair once: a dismissed suggestion is not made again). Returns how many
    are new. Reads the contacts through their e-mail domain index."""
    reasons: dict[int, str] = {}
    for pk in (
        Company.objects.filter(domain=domain).exclude(pk=account.pk).values_list("pk", flat=True)
    ):
        reasons[pk] = f"its domain is {domain}"
    writers = (
        Contact.objects.alias(email_domain=EMAIL_DOMAIN)
        .filter(email_domain=domain, company__isnull=False)
        .exclude(company=account)
        .values("company")
        .annotate(contacts=Count("pk"))
        .order_by("-contacts")[:SUGGESTIONS_MAX]
    )
    for row in writers:
        n = row["contacts"]
        people = "contact writes" if n == 1 else "contacts write"
        reasons.setdefault(row["company"], f"{n} of its {people} from {domain}")
    made = AccountSuggestion.objects.bulk_create(
        [
            AccountSuggestion(account=account, company_id=pk, domain=domain, reason=reason)
            for pk, reason in sorted(reasons.items())[:SUGGESTIONS_MAX]
        ],
        ignore_conflicts=True,
    )
    return len(made)


SUGGESTIONS_MAX = 10


class SuggestionRefused(Exception):
    pass


@transaction.atomic
def account_suggestion_accept(*, suggestion: AccountSuggestion, by=None) -> Company:
    """The suggested company becomes the account: it takes the account's group id, the traits
    it does not have, the fields it leaves empty and the account's people; the company the
    group calls made is deleted. Refused when that company has CRM records of its own (they
    would go with it: merge those by hand) or the suggested one is another account already."""
    account = Company.objects.select_for_update().get(pk=suggestion.account_id)
    company = Company.objects.select_for_update().get(pk=suggestion.company_id)
    if suggestion.status != AccountSuggestion.Status.OPEN:
        raise SuggestionRefused(f"this suggestion was {suggestion.get_status_display().lower()}")
    if company.group_id:
        raise SuggestionRefused(f"{company} is the account {company.group_id!r} already")
    own = records_of(account)
    if own:
        raise SuggestionRefused(
            f"{account} has {', '.join(own)} of its own: move them to {company} first"
        )
    execute(MEMBERS_MOVE_SQL, [company.pk, account.pk])
    group_id, traits = account.group_id, account.group_traits
    fields = {field: getattr(account, field) for field in ("industry", "size")}
    audit_record(
        actor=by,
        action="account_suggestion.accept",
        obj=company,
        note=f"took account {group_id!r} (company {account.pk}, deleted) for {suggestion.domain}",
    )
    account.delete()  # with its people's links (moved above) and suggestions
    company.group_id = group_id
    company.group_traits = {**traits, **company.group_traits}
    for field, value in fields.items():
        if value and not getattr(company, field):
            setattr(company, field, value)
    company.save()
    return company


@transaction.atomic
def account_suggestion_dismiss(*, suggestion: AccountSuggestion, by=None) -> AccountSuggestion:
    if suggestion.status != AccountSuggestion.Status.OPEN:
        raise SuggestionRefused(f"this suggestion was {suggestion.get_status_display().lower()}")
    suggestion.status = AccountSuggestion.Status.DISMISSED
    suggestion.decided_at = timezone.now()
    suggestion.decided_by = by if getattr(by, "pk", None) else None
    suggestion.save(update_fields=["status", "decided_at", "decided_by"])
    return suggestion


def records_of(company: Company) -> list[str]:
    """The CRM records that refer to the company (its contacts, deals, ...), by kind: every
    relation to it, so a kind added later is counted too; the account's own links and
    suggestions are not records."""
    found = []
    for relation in Company._meta.related_objects:
        if relation.related_model in (AccountMember, AccountSuggestion) or relation.many_to_many:
            continue
        rows = relation.related_model._base_manager.filter(**{relation.field.name: company})
        if rows.exists():
            found.append(str(relation.related_model._meta.verbose_name_plural))
    return found


MEMBERS_MOVE_SQL = f"""
INSERT INTO {MEMBERS} (company_id, profile_id, first_seen_at, last_seen_at)
SELECT %b, profile_id, first_seen_at, last_seen_at FROM {MEMBERS} WHERE company_id = %b
ORDER BY profile_id
ON CONFLICT (company_id, profile_id) DO UPDATE SET
    first_seen_at = LEAST({MEMBERS}.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST({MEMBERS}.last_seen_at, EXCLUDED.last_seen_at)
"""  # noqa: S608 - table name from model metadata; values are parameters
