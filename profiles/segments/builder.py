"""The visual rule builder's side on the server: what it offers (the vocabulary) and what it
warns about.

Each leaf of a target describes itself (``Leaf.describe``) as one of four shapes the builder
knows how to edit:

- ``field``: ``{"<leaf>": "<key>", "op": ..., "value": ...}`` over a list of ``fields`` (each
  with its key, label, JSON types and example values); ``free`` when other keys may be typed
  (traits);
- ``choice``: ``{"<leaf>": <one of choices>}`` (a segment, a purpose, a category);
- ``event``: events by name with property filters, a count and a time window;
- ``page``: page views by URL, with a count and a time window.

Event names, property keys and trait keys come from ``ObservedField`` (recorded by processing),
never from a scan of the events. A condition on an event, a property or a trait never seen gets
a warning: it is valid, but it is most likely a typo, and it would match nobody.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils.dateparse import parse_date, parse_datetime

from profiles.models import ObservedField
from profiles.segments.rules.language import GROUPS, OPERATORS, Target

OPERATOR_LABELS = {
    "eq": "is",
    "neq": "is not",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "starts_with": "starts with",
    "exists": "is present",
}
assert set(OPERATOR_LABELS) == set(OPERATORS)

MAX_EVENTS = 300
MAX_FIELDS = 300


def rule_vocabulary(target: Target) -> dict:
    """What the builder offers for rules over ``target``: each described leaf, the operators."""
    return {
        "leaves": {
            name: {**leaf.describe(), "help": leaf.help}
            for name, leaf in target.leaves.items()
            if leaf.describe is not None
        },
        "operators": OPERATOR_LABELS,
    }


def field_entry(key: str, label: str = "", types=(), examples=()) -> dict:
    """One field a ``field`` leaf offers. ``format`` is "date" when its examples are dates (the
    builder then offers a date picker)."""
    entry = {"key": key, "label": label or key, "types": list(types), "examples": list(examples)}
    if examples and all(isinstance(e, str) and is_date(e) for e in examples):
        entry["format"] = "date"
    return entry


def is_date(text: str) -> bool:
    try:
        return bool(parse_date(text[:10])) and (len(text) == 10 or bool(parse_datetime(text)))
    except ValueError:
        return False


def observed_traits() -> list[dict]:
    fields = ObservedField.objects.filter(kind=ObservedField.Kind.TRAIT).order_by("key")
    return [field_entry(f.key, types=f.types, examples=f.examples) for f in fields[:MAX_FIELDS]]


def observed_events() -> list[dict]:
    """The events seen, the latest first, each with its properties."""
    events = ObservedField.objects.filter(kind=ObservedField.Kind.EVENT)
    names = list(events.order_by("-last_seen_at", "event").values_list("event", "types"))
    names = names[:MAX_EVENTS]
    properties: dict[str, list[dict]] = {name: [] for name, _ in names}
    rows = ObservedField.objects.filter(
        kind=ObservedField.Kind.PROPERTY, event__in=list(properties)
    ).order_by("event", "key")
    for row in rows:
        if len(properties[row.event]) < MAX_FIELDS:
            properties[row.event].append(
                field_entry(row.key, types=row.types, examples=row.examples)
            )
    return [{"name": name, "types": types, "properties": properties[name]} for name, types in names]


# --- Warnings -------------------------------------------------------------------------------------


def rule_warnings(rule) -> list[str]:
    """Conditions that are valid but name an event, a property of it or a trait never seen."""
    events = set(
        ObservedField.objects.filter(kind=ObservedField.Kind.EVENT).values_list("event", flat=True)
    )
    warnings = []
    for node in leaves(rule):
        if isinstance(node.get("event"), str):
            name = node["event"]
            if name not in events:
                warnings.append(f"No event named {name!r} has been received yet.")
                continue
            for item in node.get("where") or ():
                key = item.get("property") if isinstance(item, dict) else None
                if isinstance(key, str) and not property_seen(name, key):
                    warnings.append(f"{name!r} events have never had a property {key!r}.")
        elif isinstance(node.get("trait"), str) and not trait_seen(node["trait"]):
            warnings.append(f"No profile has been sent a trait {node['trait']!r} yet.")
    return warnings


def property_seen(event: str, key: str) -> bool:
    return ObservedField.objects.filter(
        kind=ObservedField.Kind.PROPERTY, event=event, key__in=path_prefixes(key)
    ).exists()


def trait_seen(key: str) -> bool:
    fields = ObservedField.objects.filter(kind=ObservedField.Kind.TRAIT)
    return fields.filter(key__in=path_prefixes(key)).exists()


def path_prefixes(key: str) -> list[str]:
    """``a.b.c`` was seen if ``a.b.c`` was, or (deeper than recorded) ``a.b``; not just ``a``,
    which would say nothing about its keys."""
    parts = key.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), min(len(parts), 2) - 1, -1)]


def leaves(node) -> Iterator[dict]:
    if not isinstance(node, dict):
        return
    for group in GROUPS:
        if group in node:
            children = node[group]
            for child in children if isinstance(children, list) else [children]:
                yield from leaves(child)
            return
    yield node
