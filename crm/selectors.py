from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Model, Q, QuerySet, Sum

from cdphub.api_auth import ApiKeyUser
from crm.models import (
    AccountSuggestion,
    Activity,
    Company,
    Contact,
    ContactMerge,
    Deal,
    DealStageChange,
    DuplicateCandidate,
    SalesTeam,
    Task,
    Ticket,
)

# --- Record visibility ----------------------------------------------------------------------


def visible_owner_ids(user) -> frozenset[int] | None:
    """Whose CRM records ``user`` sees: None for everyone's, else the owners' user ids.

    Only people in a sales team (as member or lead) are limited, so a deployment without teams,
    and the other roles, see what they always saw. Several teams add up: the most permissive
    wins. Cached on the user for the request, like Django's permission cache."""
    cached = getattr(user, "_crm_visible_owner_ids", False)
    if cached is not False:
        return cached
    ids = _visible_owner_ids(user)
    if user is not None:
        user._crm_visible_owner_ids = ids
    return ids


def _visible_owner_ids(user) -> frozenset[int] | None:
    if isinstance(user, ApiKeyUser):
        return None  # an integration: its scopes decide what it reads
    if user is None or not user.is_authenticated:
        return frozenset()
    if user.is_superuser:
        return None
    teams = list(
        SalesTeam.objects.filter(Q(members=user) | Q(manager=user))
        .order_by()
        .distinct()
        .values_list("pk", "visibility", "manager_id")
    )
    if not teams:
        return None
    if any(visibility == SalesTeam.Visibility.ALL for _, visibility, _ in teams):
        return None
    seen = [
        pk
        for pk, visibility, manager_id in teams
        if visibility == SalesTeam.Visibility.TEAM or manager_id == user.pk
    ]
    ids = {user.pk}
    if seen:
        people = SalesTeam.objects.filter(pk__in=seen).order_by().values_list("members", "manager")
        ids.update(pk for row in people for pk in row if pk is not None)
    return frozenset(ids)


def owned_q(owner_ids: Collection[int], prefix: str = "") -> Q:
    """Owned by someone whose records are seen, or unassigned: a lead nobody owns yet is
    everyone's to pick up (an import or a web form without an owner)."""
    return Q(**{f"{prefix}owner_id__in": owner_ids}) | Q(**{f"{prefix}owner__isnull": True})


def on_visible_record_q(parents: tuple[str, ...]) -> Callable[[Collection[int], str], Q]:
    """For records about other records (activities, tasks, tickets): seen with their owner, or
    with any record they are on, as they show on that record's timeline; with neither an
    owner nor a record, they are unassigned."""

    def rule(owner_ids: Collection[int], prefix: str = "") -> Q:
        seen = Q(**{f"{prefix}owner_id__in": owner_ids})
        for parent in parents:
            linked = Q(**{f"{prefix}{parent}__isnull": False})
            seen |= linked & owned_q(owner_ids, f"{prefix}{parent}__")
        unassigned = {f"{prefix}owner__isnull": True}
        unassigned.update({f"{prefix}{parent}__isnull": True for parent in parents})
        return seen | Q(**unassigned)

    return rule


def _pair_q(owner_ids: Collection[int], prefix: str = "") -> Q:
    # A duplicate pair shows both people: both must be visible.
    return owned_q(owner_ids, f"{prefix}contact_a__") & owned_q(owner_ids, f"{prefix}contact_b__")


def _suggestion_q(owner_ids: Collection[int], prefix: str = "") -> Q:
    # A suggestion names two companies: both must be visible.
    return owned_q(owner_ids, f"{prefix}account__") & owned_q(owner_ids, f"{prefix}company__")


def _merge_q(owner_ids: Collection[int], prefix: str = "") -> Q:
    # The merged person's data went to the survivor; with the survivor gone, only people who
    # see everything read it.
    return Q(**{f"{prefix}survivor__isnull": False}) & owned_q(owner_ids, f"{prefix}survivor__")


VISIBILITY_RULES: dict[type[Model], Callable[[Collection[int], str], Q]] = {
    Company: owned_q,
    Contact: owned_q,
    Deal: owned_q,
    Activity: on_visible_record_q(("contact", "deal", "company")),
    Task: on_visible_record_q(("contact", "deal")),
    Ticket: on_visible_record_q(("contact", "company")),
    DuplicateCandidate: _pair_q,
    AccountSuggestion: _suggestion_q,
    ContactMerge: _merge_q,
}


def visible_to(user, queryset: QuerySet) -> QuerySet:
    """The rows of ``queryset`` that ``user`` may see: the one rule behind the admin lists,
    pages, actions, exports and autocompletes and the API. One condition on the rows
    (``owner_id IN (...)``), no query per row."""
    if user is None or not user.is_authenticated:
        return queryset.none()
    owner_ids = visible_owner_ids(user)
    if owner_ids is None:
        return queryset
    return queryset.filter(VISIBILITY_RULES[queryset.model](owner_ids, ""))


def visible_q(user, model: type[Model], prefix: str) -> Q:
    """The same rule for rows reached through ``prefix`` (``"deals__"``), for counts of
    related records; an empty Q when ``user`` sees everything."""
    owner_ids = visible_owner_ids(user)
    if owner_ids is None:
        return Q()
    return VISIBILITY_RULES[model](owner_ids, prefix)


def links_out_of_sight(user, model: type[Model], records) -> dict[str, frozenset]:
    """Per foreign key of ``model`` to a record with a visibility rule, the ids that
    ``records`` (a queryset or loaded rows) link to and ``user`` does not see. A visible record
    keeps its link to a record that moved out of the user's sight; it shows it without its
    name. One query per kind of link (two for a queryset), whatever the number of rows."""
    if visible_owner_ids(user) is None:
        return {}
    hidden = {}
    for field in model._meta.concrete_fields:
        if not field.is_relation or field.related_model not in VISIBILITY_RULES:
            continue
        if isinstance(records, QuerySet):
            ids = set(records.order_by().values_list(field.attname, flat=True).distinct())
        else:
            ids = {getattr(record, field.attname) for record in records}
        ids.discard(None)
        if not ids:
            continue
        key = field.target_field.attname
        linked = field.related_model._base_manager.filter(**{f"{key}__in": ids})
        out = ids - set(visible_to(user, linked).values_list(key, flat=True))
        if out:
            hidden[field.name] = frozenset(out)
    return hidden


# --- Reads -------------------------------------------------------------------------------------


def deals_stage_totals(deals: QuerySet[Deal]) -> list[dict]:
    """Per pipeline stage and currency: number of deals, total amount and the
    probability-weighted amount (what the stage is expected to bring in)."""
    weighted = ExpressionWrapper(
        F("amount") * F("probability") / 100,
        output_field=DecimalField(max_digits=16, decimal_places=2),
    )
    return list(
        deals.order_by()
        .values("stage_id", "stage__name", "stage__order", "stage__pipeline__name", "currency")
        .annotate(count=Count("id"), total=Sum("amount"), weighted=Sum(weighted))
        .order_by("stage__pipeline__name", "stage__order", "currency")
    )


def contacts_for_mailing(purpose_code: str) -> QuerySet[Contact]:
    """Contacts a campaign for ``purpose_code`` may reach now: an e-mail address, and a linked
    profile the consent selector allows. The only source of CRM mailing lists."""
    from consent.selectors import profiles_with_consent

    allowed = profiles_with_consent(purpose_code).values("pk")
    return Contact.objects.exclude(email="").filter(profile_id__in=allowed).order_by("pk")


# --- A contact's timeline ----------------------------------------------------------------------

TIMELINE_LENGTH = 30


# A company can have thousands of deals: the timeline reads the most recently changed.
TIMELINE_DEALS = 500


def record_timeline(*, record: Contact | Company | Deal, user) -> list[dict]:
    """One timeline of a contact, company or deal, newest first, of what ``user`` may see: its
    activities (a company's include those logged on its contacts), what happened to its deals
    (opened, moved to a stage, won or lost) and its tickets (opened, resolved). Each entry has
    ``at``, ``what``, ``detail`` and the ``record`` it is about."""
    activities, deals, tickets = _timeline_sources(record)
    entries = [
        {
            "at": activity.done_at or activity.due_at or activity.created_at,
            "what": " - ".join(
                part
                for part in (activity.get_kind_display(), activity.get_outcome_display())
                if part
            ),
            "detail": activity.subject,
            "record": activity,
        }
        for activity in visible_to(user, activities).order_by("-created_at")[:TIMELINE_LENGTH]
    ]
    for ticket in visible_to(user, tickets).order_by("-created_at")[:TIMELINE_LENGTH]:
        entries.append(
            {
                "at": ticket.created_at,
                "what": "Ticket opened",
                "detail": ticket.subject,
                "record": ticket,
            }
        )
        if ticket.resolved_at:
            entries.append(
                {
                    "at": ticket.resolved_at,
                    "what": "Ticket resolved",
                    "detail": ticket.subject,
                    "record": ticket,
                }
            )
    visible_deals = visible_to(user, deals).order_by("-updated_at")[:TIMELINE_DEALS]
    deals = {deal.pk: deal for deal in visible_deals}
    for deal in deals.values():
        entries.append(
            {"at": deal.created_at, "what": "Deal opened", "detail": deal.name, "record": deal}
        )
        if deal.closed_at:
            outcome = "Deal won" if deal.status == Deal.Status.WON else "Deal lost"
            entries.append(
                {"at": deal.closed_at, "what": outcome, "detail": deal.name, "record": deal}
            )
    moves = (
        DealStageChange.objects.filter(deal_id__in=list(deals), from_stage__isnull=False)
        .select_related("to_stage")
        .order_by("-changed_at")[:TIMELINE_LENGTH]
    )
    for move in moves:
        stage = move.to_stage.name if move.to_stage else "a stage since deleted"
        deal = deals[move.deal_id]
        detail = f"{deal.name} to {stage}"
        entries.append(
            {"at": move.changed_at, "what": "Deal moved", "detail": detail, "record": deal}
        )
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    return entries[:TIMELINE_LENGTH]


def _timeline_sources(record) -> tuple[QuerySet, QuerySet, QuerySet]:
    """The activities, deals and tickets on a record's timeline."""
    if isinstance(record, Contact):
        return record.activities.all(), record.deals.all(), record.tickets.all()
    if isinstance(record, Company):
        activities = Activity.objects.filter(Q(company=record) | Q(contact__company=record))
        return activities, record.deals.all(), record.tickets.all()
    return record.activities.all(), Deal.objects.filter(pk=record.pk), Ticket.objects.none()


# --- A record's associations ---------------------------------------------------------------------

ASSOCIATION_SAMPLE = 5


@dataclass
class Association:
    """Records of one kind linked to a record: how many the viewer sees, the first few, and
    the list filter that shows them all."""

    model: type[Model]
    count: int
    records: list
    lookup: str  # the list's filter: "contact__id__exact=12"


def record_associations(*, record: Contact | Company | Deal, user) -> list[Association]:
    """What is linked to a contact (deals, tickets, tasks), a company (deals, tickets) or a
    deal (tasks), as ``user`` sees it, open ones first."""
    kinds = {
        Contact: [(Deal, "contact"), (Ticket, "contact"), (Task, "contact")],
        Company: [(Deal, "company"), (Ticket, "company")],
        Deal: [(Task, "deal")],
    }[type(record)]
    associations = []
    for model, field in kinds:
        linked = visible_to(user, model.objects.filter(**{field: record}))
        first = list(linked.order_by(*ASSOCIATION_ORDER[model])[:ASSOCIATION_SAMPLE])
        count = len(first) if len(first) < ASSOCIATION_SAMPLE else linked.count()
        associations.append(Association(model, count, first, f"{field}__id__exact={record.pk}"))
    return associations


ASSOCIATION_ORDER = {
    Deal: [F("closed_at").desc(nulls_first=True), "-updated_at"],
    Ticket: [F("resolved_at").desc(nulls_first=True), "-created_at"],
    Task: [F("done_at").desc(nulls_first=True), F("due_at").asc(nulls_last=True)],
}
