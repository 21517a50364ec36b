"""The JSON rule language: validation and compilation to one SQL query.

``language`` holds the grammar shared by every target; ``profile_target`` the leaves over CDP
profiles. Another target (DMP visitors) is a new ``Target`` with its own leaf table.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from profiles.rules.language import Context, RuleError, Target, node_compile, rule_check
from profiles.rules.profile_target import PROFILES

__all__ = [
    "PROFILES",
    "RuleError",
    "Target",
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
    rule: Any, *, target: Target = PROFILES, segment_id: int | None = None
) -> list[str]:
    """The rule's problems as ``"path: message"`` lines (empty when it is valid)."""
    try:
        rule_validate(rule, target=target, segment_id=segment_id)
    except RuleError as error:
        return error.messages
    return []


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
