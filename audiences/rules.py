"""The rule language over DMP visitors: the same groups and operators as CDP segments, with
leaves of their own.

- ``{"category": "IAB-239", "provider": "Acme Data", "within_days": 30}``: a live (not
  expired) trait hit in that taxonomy category, optionally from one provider, optionally
  observed within the last N days.
- ``{"visitor": "country" | "device_type" | "browser" | "key_kind", "op": ..., "value": ...}``:
  a coarse attribute; ``{"visitor": "last_seen_at" | "first_seen_at", "within_days": N}`` for
  recency (or ``op``/``value`` with an ISO date).
- ``{"event": ...}`` and ``{"page": ...}``: as for profiles (where, count for frequency,
  within_days/between for recency), counted over the events of the anonymous profile that holds
  the visitor's cookie or device id.
- ``{"segment": 12}``: the visitor is linked to a member of that CDP segment (links exist only
  with the person's advertising or personalisation consent).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Exists, OuterRef, Q

from audiences.models import Category, DataProvider, Visitor, VisitorTraitHit
from profiles.models import Identity, Profile
from profiles.segments.builder import field_entry
from profiles.segments.rules import Target
from profiles.segments.rules.language import (
    LIST_OPERATORS,
    ORDERING_OPERATORS,
    Context,
    Leaf,
    join,
    parse_moment,
    type_name,
)
from profiles.segments.rules.profile_target import MAX_WINDOW_DAYS, PROFILE_LEAVES

ATTRIBUTES = ("country", "device_type", "browser", "key_kind")
MOMENTS = ("first_seen_at", "last_seen_at")
ATTRIBUTE_OPERATORS = ("eq", "neq", "in", "not_in", "contains", "starts_with", "exists")


def days_check(node: dict, path: str, ctx: Context) -> None:
    days = node.get("within_days")
    if "within_days" in node and (
        not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= MAX_WINDOW_DAYS
    ):
        ctx.error(join(path, "within_days"), f"expected whole days from 1 to {MAX_WINDOW_DAYS}")


# --- category -----------------------------------------------------------------------------------


def category_validate(node: dict, path: str, ctx: Context) -> None:
    code = node["category"]
    if not isinstance(code, str) or not code.strip():
        ctx.error(path, f"expected a taxonomy category code, got {type_name(code)}")
    provider = node.get("provider")
    if "provider" in node and (not isinstance(provider, str) or not provider.strip()):
        ctx.error(join(path, "provider"), "expected a data provider's name")
    days_check(node, path, ctx)


def category_compile(node: dict, ctx: Context) -> Q:
    hits = VisitorTraitHit.objects.filter(
        visitor=OuterRef("pk"), category__code=node["category"], expires_at__gt=ctx.now
    )
    if node.get("provider"):
        hits = hits.filter(provider__name=node["provider"])
    if node.get("within_days"):
        hits = hits.filter(observed_at__gte=ctx.now - dt.timedelta(days=node["within_days"]))
    return Q(Exists(hits))


# --- visitor attributes -------------------------------------------------------------------------


def visitor_validate(node: dict, path: str, ctx: Context) -> None:
    name = node["visitor"]
    if name in MOMENTS:
        return moment_validate(node, path, ctx)
    if name not in ATTRIBUTES:
        ctx.error(
            path,
            f"unknown visitor attribute {name!r}; expected one of: "
            f"{', '.join((*ATTRIBUTES, *MOMENTS))}",
        )
        return
    op = node.get("op", "eq" if "value" in node else "exists")
    if op not in ATTRIBUTE_OPERATORS:
        ctx.error(
            join(path, "op"),
            f"unknown operator {op!r} for {name}; expected one of: "
            f"{', '.join(ATTRIBUTE_OPERATORS)}",
        )
    elif op in LIST_OPERATORS and not (isinstance(node.get("value"), list) and node["value"]):
        ctx.error(join(path, "value"), "expected a non-empty list of values")
    elif op not in LIST_OPERATORS and op != "exists" and not isinstance(node.get("value"), str):
        ctx.error(join(path, "value"), f"expected a string, got {type_name(node.get('value'))}")


def moment_validate(node: dict, path: str, ctx: Context) -> None:
    if "within_days" in node:
        days_check(node, path, ctx)
        return
    op = node.get("op")
    if op not in ORDERING_OPERATORS:
        ctx.error(join(path, "op"), "a date needs within_days, or op gt/gte/lt/lte with a date")
    elif parse_moment(node.get("value")) is None:
        ctx.error(join(path, "value"), f"expected an ISO 8601 date, got {node.get('value')!r}")


def visitor_compile(node: dict, ctx: Context) -> Q:
    name = node["visitor"]
    if name in MOMENTS:
        if "within_days" in node:
            return Q(**{f"{name}__gte": ctx.now - dt.timedelta(days=node["within_days"])})
        return Q(**{f"{name}__{node['op']}": parse_moment(node["value"])})
    op = node.get("op", "eq" if "value" in node else "exists")
    value: Any = node.get("value")
    if name in ("country",) and isinstance(value, str):
        value = value.upper()
    lookups = {
        "eq": Q(**{f"{name}__iexact": value}),
        "neq": ~Q(**{name: ""}) & ~Q(**{f"{name}__iexact": value}),
        "in": Q(**{f"{name}__in": value}),
        "not_in": ~Q(**{name: ""}) & ~Q(**{f"{name}__in": value}),
        "contains": Q(**{f"{name}__icontains": value}),
        "starts_with": Q(**{f"{name}__istartswith": value}),
        "exists": ~Q(**{name: ""}) if value is not False else Q(**{name: ""}),
    }
    return lookups[op]


# --- through profiles: events, pages, segments --------------------------------------------------


def via_anonymous_profile(profile_condition: Q) -> Q:
    """Visitors whose cookie (device) id belongs to a profile matching the condition."""
    matching = Profile.objects.filter(profile_condition).values("pk")
    ids = {"cookie": Identity.Kind.ANONYMOUS_ID, "device": Identity.Kind.DEVICE_ID}
    return _any(
        Q(key_kind=key_kind)
        & Q(
            Exists(
                Identity.objects.filter(kind=kind, value=OuterRef("key"), profile_id__in=matching)
            )
        )
        for key_kind, kind in ids.items()
    )


def _any(conditions) -> Q:
    result = Q(pk__in=[])
    for condition in conditions:
        result |= condition
    return result


def through_profiles(profile_leaf: Leaf, *, linked: bool) -> Leaf:
    """A profile leaf answered for visitors: through the linked profile, or through the
    anonymous profile holding the visitor's id."""

    def compile_for_visitors(node: dict, ctx: Context) -> Q:
        condition = profile_leaf.compile(node, ctx)
        if linked:
            return Q(profile__in=Profile.objects.filter(condition).values("pk"))
        return via_anonymous_profile(condition)

    return Leaf(
        profile_leaf.keys,
        profile_leaf.validate,
        compile_for_visitors,
        profile_leaf.help,
        profile_leaf.describe,
    )


# --- what the visual rule builder offers (profiles.segments.builder) ---------------------------


def category_describe() -> dict:
    categories = Category.objects.order_by("code").values_list("code", "name")
    providers = DataProvider.objects.order_by("name").values_list("name", flat=True)
    return {
        "label": "Interest category",
        "shape": "choice",
        "choices": [[code, f"{name} ({code})"] for code, name in categories],
        "qualifiers": {"provider": [[name, name] for name in providers]},
        "window": True,
    }


def visitor_describe() -> dict:
    fields = [field_entry(name, name.replace("_", " "), ["string"]) for name in ATTRIBUTES]
    fields += [
        {**field_entry(name, name.replace("_", " "), ["string"]), "format": "date"}
        for name in MOMENTS
    ]
    return {"label": "Visitor", "shape": "field", "fields": fields}


VISITOR_LEAVES = {
    "category": Leaf(
        frozenset({"provider", "within_days"}),
        category_validate,
        category_compile,
        "a live taxonomy category hit",
        category_describe,
    ),
    "visitor": Leaf(
        frozenset({"op", "value", "within_days"}),
        visitor_validate,
        visitor_compile,
        "a visitor attribute or recency",
        visitor_describe,
    ),
    "event": through_profiles(PROFILE_LEAVES["event"], linked=False),
    "page": through_profiles(PROFILE_LEAVES["page"], linked=False),
    "segment": through_profiles(PROFILE_LEAVES["segment"], linked=True),
}

VISITORS = Target(name="visitors", leaves=VISITOR_LEAVES, base_queryset=Visitor.objects.all)
