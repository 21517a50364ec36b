"""The JSON rule language: validation and compilation to one SQL query.

``language`` holds the grammar shared by every target; ``profile_target`` the leaves over CDP
profiles. Another target (DMP visitors, with ``category`` and ``visitor`` leaves) is a new
``Target`` with its own leaf table and base queryset; groups, operators, paths and limits are
shared.

Leaves over profiles (keys beyond the leaf's own are optional):

- ``{"trait": "address.city", "op": ..., "value": ...}``: a given trait; numbers compare as
  numbers, ISO dates as dates (a bare date is the whole day), other strings as text.
- ``{"computed": "lifetime_value", "op": ..., "value": ...}``: a computed trait
  (``profiles.segments.computed``); ``event_counts.<name>.30d`` reads a window count.
- ``{"event": "Order Completed", "type": "track", "where": [{"property", "op", "value"}],
  "count": {"op", "value"}, "within_days": 7 | "between": [from, to],
  "occurrence": "first" | "last"}``: events; ``count`` defaults to at least once;
  ``occurrence`` means the first (last) such event falls in the window.
- ``{"page": "/jackets", "op": "contains" | "eq" | "starts_with", ...}``: page events by their
  ``url`` property, with the same where/count/window/occurrence keys as ``event``.
- ``{"consent": "email_marketing"}``: the purpose is granted now.
- ``{"segment": 12}``: member of segment 12 (a dynamic segment's rule is expanded inline; a
  static segment's uploaded members are read); cycles are refused.
- ``{"crm": "lifecycle_stage" | "owner" | "country" | "job_title" | "company" | "tag" |
  "deal_stage", "op": ..., "value": ...}``: a linked CRM contact's field; ``deal_stage`` is an
  open deal in that stage (``"op": "exists"``: any open deal).

Operators: eq, neq, gt, gte, lt, lte, in, not_in, contains, starts_with, exists. ``neq`` and
``not_in`` match only profiles that have the value; ``{"not": {... "eq" ...}}`` also matches those
without it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from profiles.segments.rules.language import Context, RuleError, Target, node_compile, rule_check
from profiles.segments.rules.personal import personal_conditions
from profiles.segments.rules.profile_target import PROFILES

__all__ = [
    "PROFILES",
    "RuleError",
    "Target",
    "personal_conditions",
    "rule_errors",
    "rule_q",
    "rule_queryset",
    "rule_validate",
]


def rule_validate(rule: Any, *, target: Target = PROFILES, segment_id: int | None = None) -> None:
    """Raise ``RuleError`` listing every problem of ``rule`` with its path. ``segment_id`` is
    the segment the rule belongs to, so that references back to it are refused as cycles."""
    ctx = Context(target=target, segment_stack=(segment_id,) if segment_id else ())
    rule_check(rule, ctx)
    if ctx.errors:
        raise RuleError(ctx.errors)


def rule_errors(
    rule: Any,
    *,
    target: Target = PROFILES,
    segment_id: int | None = None,
    pii_allowed: bool = True,
) -> list[str]:
    """The rule's problems as ``"path: message"`` lines (empty when it is valid). Without
    ``pii_allowed`` (the caller may not see personal data) conditions on personal data are
    problems too (``profiles.segments.rules.personal``)."""
    try:
        rule_validate(rule, target=target, segment_id=segment_id)
    except RuleError as error:
        return error.messages
    if pii_allowed:
        return []
    return [f"{path}: {PERSONAL_CONDITION}" for path in personal_conditions(rule)]


PERSONAL_CONDITION = (
    "a condition on personal data (an e-mail, phone, name or address, or a segment with one) "
    "needs personal data access"
)


def rule_q(
    rule: Any,
    *,
    target: Target = PROFILES,
    segment_id: int | None = None,
    profile_ids: list[int] | None = None,
) -> Q:
    """The validated rule as one ``Q`` over the target's model (subqueries, no raw SQL).
    ``profile_ids`` restricts the subqueries too, for re-evaluating a few profiles."""
    rule_validate(rule, target=target, segment_id=segment_id)
    ctx = Context(
        target=target,
        segment_stack=(segment_id,) if segment_id else (),
        now=timezone.now(),
        extra={"profile_ids": profile_ids} if profile_ids is not None else {},
    )
    return node_compile(rule, ctx)


def rule_queryset(
    rule: Any,
    *,
    target: Target = PROFILES,
    segment_id: int | None = None,
    profile_ids: list[int] | None = None,
) -> QuerySet:
    """Everything the rule selects, as one queryset (merged profiles excluded); only among
    ``profile_ids`` when given."""
    queryset = target.base_queryset()
    if profile_ids is not None:
        queryset = queryset.filter(pk__in=profile_ids)
    condition = rule_q(rule, target=target, segment_id=segment_id, profile_ids=profile_ids)
    return queryset.filter(condition)
