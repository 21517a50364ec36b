"""The pipeline board: a column per stage with its deals, the totals at the top, filters.

Read by the admin's board page and by the API alike; moves go through
``crm.services.deal_move``. A column shows its first page of deals and loads the rest a page at
a time, so a pipeline with ten thousand open deals paints as fast as the deal list."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from crm.models import Deal, Pipeline, SalesTeam, Stage
from crm.selectors import visible_to

PAGE_SIZE = 25
# Won and lost columns show what closed recently, so the board stays about the open pipeline.
CLOSED_WITHIN_DAYS = 30


class BoardFilterForm(forms.Form):
    """The board's filters, from the admin page's query string or the API's parameters."""

    owner = forms.CharField(
        required=False, help_text='A user id, or "me" for the deals you own.', max_length=20
    )
    team = forms.ModelChoiceField(
        queryset=SalesTeam.objects.all(),
        required=False,
        help_text="Deals owned by the team's members or lead.",
    )
    close_after = forms.DateField(
        required=False, label="closing from", help_text="Expected close date on or after."
    )
    close_before = forms.DateField(
        required=False, label="closing until", help_text="Expected close date on or before."
    )

    def __init__(self, data=None, *, user=None):
        super().__init__(data)
        self.user = user

    def clean_owner(self) -> int | None:
        value = self.cleaned_data["owner"].strip()
        if not value:
            return None
        if value == "me":
            return self.user.pk
        if not value.isdigit() or not get_user_model().objects.filter(pk=value).exists():
            raise forms.ValidationError(f'No user with id {value!r}: give a user id or "me".')
        return int(value)

    def clean(self):
        cleaned = super().clean()
        after, before = cleaned.get("close_after"), cleaned.get("close_before")
        if after and before and after > before:
            raise forms.ValidationError("The close date range ends before it starts.")
        return cleaned


@dataclass
class Column:
    stage: Stage
    count: int = 0
    amounts: list[tuple[str, Decimal]] = field(default_factory=list)  # per currency
    deals: list[Deal] = field(default_factory=list)

    @property
    def has_more(self) -> bool:
        return self.count > len(self.deals)

    @property
    def closed(self) -> bool:
        return self.stage.is_won or self.stage.is_lost


def board_deals(*, pipeline: Pipeline, user, filters: dict) -> QuerySet[Deal]:
    """The deals the board shows: ``user``'s sight, the filters, open deals, and in the won
    and lost columns the deals closed in the last ``CLOSED_WITHIN_DAYS`` days."""
    recently = timezone.now() - timedelta(days=CLOSED_WITHIN_DAYS)
    deals = visible_to(user, Deal.objects.filter(pipeline=pipeline)).filter(
        Q(status=Deal.Status.OPEN) | Q(closed_at__gte=recently)
    )
    if filters.get("owner"):
        deals = deals.filter(owner_id=filters["owner"])
    if team := filters.get("team"):
        people = {*team.members.values_list("pk", flat=True), team.manager_id} - {None}
        deals = deals.filter(owner_id__in=people)
    if filters.get("close_after"):
        deals = deals.filter(expected_close_date__gte=filters["close_after"])
    if filters.get("close_before"):
        deals = deals.filter(expected_close_date__lte=filters["close_before"])
    return deals


def column_page(deals: QuerySet[Deal], stage: Stage, offset: int = 0) -> list[Deal]:
    """A page of a column's cards: closing soonest first, those without a date last."""
    ordered = deals.filter(stage=stage).order_by(
        F("expected_close_date").asc(nulls_last=True), "pk"
    )
    cards = ordered.select_related("company", "owner").only(
        "name",
        "amount",
        "currency",
        "stage_id",
        "expected_close_date",
        "stage_entered_at",
        "company__name",
        "owner__username",
        "owner__first_name",
        "owner__last_name",
    )
    return list(cards[offset : offset + PAGE_SIZE])


def board_columns(*, pipeline: Pipeline, user, filters: dict) -> list[Column]:
    """Every stage of ``pipeline`` in order, with its totals (one grouped query) and its first
    page of deals (one query per stage, each a top-N read)."""
    deals = board_deals(pipeline=pipeline, user=user, filters=filters)
    columns = {stage.pk: Column(stage) for stage in pipeline.stages.order_by("order", "pk")}
    totals = (
        deals.order_by()
        .values("stage_id", "currency")
        .annotate(count=Count("pk"), amount=Sum("amount"))
        .order_by("stage_id", "currency")
    )
    for row in totals:
        column = columns.get(row["stage_id"])
        if column is not None:
            column.count += row["count"]
            column.amounts.append((row["currency"], row["amount"]))
    for column in columns.values():
        if column.count:
            column.deals = column_page(deals, column.stage)
    return list(columns.values())


def column_totals(*, pipeline: Pipeline, user, filters: dict, stage_ids) -> dict[int, dict]:
    """Count and amounts of a few columns, after a move, for the board to redraw them."""
    deals = board_deals(pipeline=pipeline, user=user, filters=filters).filter(
        stage_id__in=stage_ids
    )
    totals = {pk: {"count": 0, "amounts": []} for pk in stage_ids}
    rows = deals.order_by().values("stage_id", "currency").annotate(n=Count("pk"), a=Sum("amount"))
    for row in rows.order_by("stage_id", "currency"):
        totals[row["stage_id"]]["count"] += row["n"]
        totals[row["stage_id"]]["amounts"].append([row["currency"], str(row["a"])])
    return totals
