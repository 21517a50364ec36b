"""The leaves of the rule language over CDP profiles (segments).

Every leaf becomes a condition on ``profiles_profile``: a JSONB comparison for traits, an
``EXISTS`` subquery for events and static segments. Consent and the CRM add their own leaves
(``consent``, ``crm``) with ``register_leaf`` from their ``leaves.py``. ``segment`` leaves of
dynamic segments are expanded inline (the other segment's rule becomes part of this query), so a
nested segment is always as fresh as its parent and refresh order never matters; static segments
have no rule and are read from their memberships.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q

from profiles.models import (
    BUILT_IN_COMPUTED_KEYS,
    ComputedTrait,
    Event,
    Profile,
    Segment,
    SegmentMembership,
)
from profiles.segments.builder import field_entry, observed_events, observed_traits
from profiles.segments.rules.jsonvalue import value_compare
from profiles.segments.rules.language import (
    LIST_OPERATORS,
    Context,
    Leaf,
    Target,
    comparison_check,
    join,
    list_check,
    node_check,
    parse_moment,
    path_check,
    type_name,
)

COUNT_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in")
MAX_WINDOW_DAYS = 3660

# Computed traits a rule may name (the first segment of a ``computed`` path): the built-in
# ones, and those defined (``ComputedTrait``).
COMPUTED_TRAITS = BUILT_IN_COMPUTED_KEYS


# --- trait and computed -------------------------------------------------------------------------


def trait_validate(node: dict, path: str, ctx: Context) -> None:
    path_check(node["trait"], path, ctx, "trait path")
    comparison_check(node, path, ctx)


def trait_compile(node: dict, ctx: Context) -> Q:
    return compare(node, "traits", node["trait"])


def compare(node: dict, field: str, path: str) -> Q:
    op = node.get("op", "eq" if "value" in node else "exists")
    return value_compare(field, path, op, node.get("value"), has_value="value" in node)


def computed_validate(node: dict, path: str, ctx: Context) -> None:
    name = node["computed"]
    path_check(name, path, ctx, "computed trait")
    key = name.split(".")[0] if isinstance(name, str) else None
    if key is not None and key not in COMPUTED_TRAITS:
        defined = list(ComputedTrait.objects.order_by("key").values_list("key", flat=True))
        if key not in defined:
            known = ", ".join([*COMPUTED_TRAITS, *defined])
            ctx.error(path, f"unknown computed trait {name!r}; expected one of: {known}")
    comparison_check(node, path, ctx)


def computed_compile(node: dict, ctx: Context) -> Q:
    return compare(node, "computed_traits", node["computed"])


# --- events and pages ---------------------------------------------------------------------------


def event_validate(node: dict, path: str, ctx: Context) -> None:
    name = node["event"]
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        ctx.error(path, f"expected the event name as a non-empty string, got {type_name(name)}")
    event_type = node.get("type")
    if event_type is not None and event_type not in Event.Type.values:
        ctx.error(
            join(path, "type"),
            f"unknown event type {event_type!r}; expected one of: {', '.join(Event.Type.values)}",
        )
    occurrence_validate(node, path, ctx)


def occurrence_validate(node: dict, path: str, ctx: Context) -> None:
    """The parts shared by ``event`` and ``page``: where, count, window, first/last."""
    where_validate(node.get("where"), join(path, "where"), ctx)
    if "count" in node:
        count_validate(node["count"], join(path, "count"), ctx)
    window_validate(node, path, ctx)
    occurrence = node.get("occurrence")
    if occurrence is None:
        return
    if occurrence not in ("first", "last"):
        ctx.error(join(path, "occurrence"), "expected 'first' or 'last'")
    elif "within_days" not in node and "between" not in node:
        ctx.error(join(path, "occurrence"), f"'{occurrence}' needs within_days or between")
    elif "count" in node:
        ctx.error(join(path, "occurrence"), "use either occurrence or count, not both")


def where_validate(where: Any, path: str, ctx: Context) -> None:
    if where is None:
        return
    if not isinstance(where, list):
        ctx.error(path, f"expected a list of property filters, got {type_name(where)}")
        return
    for index, item in enumerate(where):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict) or "property" not in item:
            ctx.error(item_path, 'expected {"property": ..., "op": ..., "value": ...}')
            continue
        for key in sorted(set(item) - {"property", "op", "value"}):
            ctx.error(join(item_path, key), "unknown key; allowed: op, property, value")
        path_check(item["property"], join(item_path, "property"), ctx, "property path")
        comparison_check(item, item_path, ctx)


def count_validate(count: Any, path: str, ctx: Context) -> None:
    if not isinstance(count, dict):
        ctx.error(path, f'expected {{"op": ..., "value": ...}}, got {type_name(count)}')
        return
    for key in sorted(set(count) - {"op", "value"}):
        ctx.error(join(path, key), "unknown key; allowed: op, value")
    op = count.get("op", "gte")
    if op not in COUNT_OPERATORS:
        ctx.error(
            join(path, "op"),
            f"unknown count operator {op!r}; expected one of: {', '.join(COUNT_OPERATORS)}",
        )
        return
    value = count.get("value")
    values = value if op in LIST_OPERATORS else [value]
    if op in LIST_OPERATORS:
        list_check(value, join(path, "value"), ctx)
        if not isinstance(value, list):
            return
    for item in values:
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            ctx.error(join(path, "value"), f"a count is a whole number >= 0, got {item!r}")
            return


def window_validate(node: dict, path: str, ctx: Context) -> None:
    if "within_days" in node and "between" in node:
        ctx.error(join(path, "between"), "use either within_days or between, not both")
        return
    if "within_days" in node:
        days = node["within_days"]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= MAX_WINDOW_DAYS:
            ctx.error(
                join(path, "within_days"),
                f"expected whole days from 1 to {MAX_WINDOW_DAYS}, got {days!r}",
            )
    if "between" in node:
        between_validate(node["between"], join(path, "between"), ctx)


def between_validate(between: Any, path: str, ctx: Context) -> None:
    if not isinstance(between, list) or len(between) != 2:
        ctx.error(path, "expected [from, to] as two ISO 8601 dates")
        return
    moments = [parse_moment(item) for item in between]
    for index, moment in enumerate(moments):
        if moment is None:
            ctx.error(f"{path}[{index}]", f"expected an ISO 8601 date, got {between[index]!r}")
    if all(moments) and window_bounds_of(between)[0] >= window_bounds_of(between)[1]:
        ctx.error(path, "'from' must be before 'to'")


def window_bounds_of(between: list[str]) -> tuple[dt.datetime, dt.datetime]:
    """[from, to]: a date ``to`` includes that whole day."""
    start, end = (parse_moment(item) for item in between)
    if not isinstance(start, dt.datetime):
        start = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    if not isinstance(end, dt.datetime):
        end = dt.datetime.combine(end, dt.time.min, tzinfo=dt.UTC) + dt.timedelta(days=1)
    return (
        start if start.tzinfo else start.replace(tzinfo=dt.UTC),
        end if end.tzinfo else end.replace(tzinfo=dt.UTC),
    )


def event_compile(node: dict, ctx: Context) -> Q:
    events = Event.objects.filter(name=node["event"])
    if node.get("type"):
        events = events.filter(type=node["type"])
    return occurrence_compile(events, node, ctx)


def occurrence_compile(events, node: dict, ctx: Context) -> Q:
    """``events`` are not yet tied to the profile: each form below ties them its own way."""
    scope = ctx.extra.get("profile_ids")
    if scope is not None:
        events = events.filter(profile_id__in=scope)
    for item in node.get("where") or ():
        events = events.filter(compare(item, "properties", item["property"]))
    window = window_of(node, ctx)
    occurrence = node.get("occurrence")
    if occurrence is not None:
        # The first (last) occurrence lies in the window: one in it, none before (after) it.
        start, end = window
        inside = at_least(in_window(events, start, end), 1)
        if occurrence == "first":
            return inside & ~at_least(events.filter(timestamp__lt=start), 1)
        return inside if end is None else inside & ~at_least(events.filter(timestamp__gte=end), 1)
    if window is not None:
        events = in_window(events, *window)
    count = node.get("count") or {}
    return count_compile(events, count.get("op", "gte"), count.get("value", 1))


def window_of(node: dict, ctx: Context) -> tuple[dt.datetime, dt.datetime | None] | None:
    """(start, end or None for "up to now and later")."""
    if "within_days" in node:
        return ctx.now - dt.timedelta(days=node["within_days"]), None
    if "between" in node:
        return window_bounds_of(node["between"])
    return None


def in_window(events, start: dt.datetime, end: dt.datetime | None):
    events = events.filter(timestamp__gte=start)
    return events if end is None else events.filter(timestamp__lt=end)


def count_compile(events, op: str, value: Any) -> Q:
    """Every count comparison in terms of "at least n" and "exactly n"."""
    if op == "gte":
        return at_least(events, value)
    if op == "gt":
        return at_least(events, value + 1)
    if op == "lt":
        return ~at_least(events, value)
    if op == "lte":
        return ~at_least(events, value + 1)
    if op == "eq":
        return exactly(events, value)
    if op == "neq":
        return ~exactly(events, value)
    matches = Q(pk__in=[])
    for item in value:
        matches |= exactly(events, item)
    return matches if op == "in" else ~matches


def at_least(events, n: int) -> Q:
    """ "At least once" is an EXISTS (a semi-join); "at least n" a grouped subquery that the
    planner hashes once, instead of counting per profile."""
    if n <= 0:
        return ~Q(pk__in=[])
    if n == 1:
        return Q(Exists(events.filter(profile=OuterRef("pk"))))
    return Q(pk__in=counted(events).filter(events_counted__gte=n).values("profile_id"))


def exactly(events, n: int) -> Q:
    if n == 0:
        return ~at_least(events, 1)
    return Q(pk__in=counted(events).filter(events_counted=n).values("profile_id"))


def counted(events):
    return events.order_by().values("profile_id").annotate(events_counted=Count("id"))


def page_validate(node: dict, path: str, ctx: Context) -> None:
    url = node["page"]
    if not isinstance(url, str) or not url:
        ctx.error(path, f"expected the URL (or part of it) as a string, got {type_name(url)}")
    op = node.get("op", "contains")
    if op not in ("eq", "contains", "starts_with"):
        ctx.error(
            join(path, "op"), f"unknown URL operator {op!r}; expected eq, contains or starts_with"
        )
    occurrence_validate(node, path, ctx)


def page_compile(node: dict, ctx: Context) -> Q:
    events = Event.objects.filter(type=Event.Type.PAGE)
    url = {"property": "url", "op": node.get("op", "contains"), "value": node["page"]}
    events = events.filter(compare(url, "properties", "url"))
    return occurrence_compile(events, node, ctx)


# --- segment ------------------------------------------------------------------------------------


def segment_validate(node: dict, path: str, ctx: Context) -> None:
    segment_id = node["segment"]
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        ctx.error(path, f"expected a segment id (a whole number), got {type_name(segment_id)}")
        return
    if segment_id in ctx.segment_stack:
        chain = " -> ".join(str(i) for i in (*ctx.segment_stack, segment_id))
        ctx.error(path, f"segment {segment_id} refers back to itself (cycle: {chain})")
        return
    segment = Segment.objects.filter(pk=segment_id).only("kind", "rule").first()
    if segment is None:
        ctx.error(path, f"segment {segment_id} does not exist")
        return
    if segment.kind == Segment.Kind.DYNAMIC and segment.rule:
        # Walk the referenced rule for cycles; its own errors are reported when it is saved.
        inner = Context(target=ctx.target, segment_stack=(*ctx.segment_stack, segment_id))
        node_check(segment.rule, "", inner, depth=0)
        for error in inner.errors:
            if "cycle" in error["message"]:
                ctx.error(path, error["message"])


def segment_compile(node: dict, ctx: Context) -> Q:
    segment_id = node["segment"]
    segment = Segment.objects.filter(pk=segment_id).only("kind", "rule").first()
    if segment is None:
        return Q(pk__in=[])
    if segment.kind == Segment.Kind.STATIC or not segment.rule:
        members = SegmentMembership.objects.filter(segment_id=segment_id, profile=OuterRef("pk"))
        return Q(Exists(members))
    if segment_id in ctx.segment_stack:  # a cycle saved before validation existed
        return Q(pk__in=[])
    from profiles.segments.rules.language import node_compile

    ctx.segment_stack = (*ctx.segment_stack, segment_id)
    try:
        return node_compile(segment.rule, ctx)
    finally:
        ctx.segment_stack = ctx.segment_stack[:-1]


# --- shared by leaves other apps register ---------------------------------------------------


def field_condition(lookup: str, op: str, value: Any) -> Q:
    if op == "exists":
        present = Q(**{f"{lookup}__isnull": False}) & ~Q(**{lookup: ""})
        return ~present if value is False else present
    if op in ("eq", "neq"):
        condition = Q(**{lookup: value})
        return ~condition if op == "neq" else condition
    if op in ("in", "not_in"):
        condition = Q(**{f"{lookup}__in": value})
        return ~condition if op == "not_in" else condition
    suffix = "icontains" if op == "contains" else "istartswith"
    return Q(**{f"{lookup}__{suffix}": value})


# --- what the visual rule builder offers (profiles.segments.builder) ---------------------------


def trait_describe() -> dict:
    return {"label": "Trait", "shape": "field", "fields": observed_traits(), "free": True}


def computed_describe() -> dict:
    from profiles.selectors import computed_trait_names

    fields = [field_entry(key, label) for key, label in computed_trait_names()]
    return {"label": "Computed trait", "shape": "field", "fields": fields}


def event_describe() -> dict:
    return {"label": "Event", "shape": "event", "events": observed_events()}


def page_describe() -> dict:
    return {"label": "Page view", "shape": "page"}


def segment_describe() -> dict:
    choices = Segment.objects.order_by("name").values_list("pk", "name")
    return {"label": "In segment", "shape": "choice", "choices": [list(c) for c in choices]}


# --- the target ---------------------------------------------------------------------------------

COMPARISON_KEYS = frozenset({"op", "value"})
OCCURRENCE_KEYS = frozenset({"where", "count", "within_days", "between", "occurrence"})

PROFILE_LEAVES = {
    "trait": Leaf(
        COMPARISON_KEYS,
        trait_validate,
        trait_compile,
        "a given trait (dotted path)",
        trait_describe,
    ),
    "computed": Leaf(
        COMPARISON_KEYS, computed_validate, computed_compile, "a computed trait", computed_describe
    ),
    "event": Leaf(
        OCCURRENCE_KEYS | {"type"}, event_validate, event_compile, "events by name", event_describe
    ),
    "page": Leaf(
        OCCURRENCE_KEYS | {"op"}, page_validate, page_compile, "page views by URL", page_describe
    ),
    "segment": Leaf(
        frozenset(), segment_validate, segment_compile, "member of a segment", segment_describe
    ),
}

PROFILES = Target(name="profiles", leaves=PROFILE_LEAVES, base_queryset=Profile.objects.active)


def register_leaf(name: str, leaf: Leaf) -> None:
    """A leaf over profiles that another app contributes (consent's ``consent``, the CRM's
    ``crm``), registered from its ``leaves.py``: the hub compiles the rule without importing
    that app's models. Its ``compile`` returns a condition on the profile (an ``EXISTS`` over
    the app's rows joined on ``OuterRef("pk")``), so the rule is still one query."""
    if name in PROFILE_LEAVES and PROFILE_LEAVES[name] is not leaf:
        raise ValueError(f"a profile rule leaf named {name!r} is registered already")
    PROFILE_LEAVES[name] = leaf
