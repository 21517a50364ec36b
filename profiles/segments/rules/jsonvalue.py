"""Comparisons on a value inside a JSON document (profile traits, computed traits, event
properties), respecting types: numbers compare as numbers (also when sent as numeric strings),
ISO dates as dates, other strings as text. A document without the value never matches a
comparison, and every condition is true or false (never SQL NULL), so ``not`` is exact.

Missing-value semantics: ``neq`` and ``not_in`` match only documents that have the value; wrap
an ``eq`` in ``not`` to also match documents without it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db.models import BooleanField, DateTimeField, DecimalField, Func, Q, TextField, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
)
from django.utils import timezone

from profiles.segments.rules.language import is_number, parse_moment

ORDERING = {"gt": GreaterThan, "gte": GreaterThanOrEqual, "lt": LessThan, "lte": LessThanOrEqual}


def json_value(field: str, path: str) -> KeyTransform:
    """``field #> path`` as an expression; dots separate nested keys."""
    expression: Any = field
    for part in path.split("."):
        expression = KeyTransform(part, expression)
    return expression


def json_text(field: str, path: str) -> KeyTextTransform:
    parts = path.split(".")
    parent: Any = field
    for part in parts[:-1]:
        parent = KeyTransform(part, parent)
    return KeyTextTransform(parts[-1], parent)


def json_number(field: str, path: str) -> Func:
    return Func(
        json_value(field, path),
        function="cdphub_jsonb_numeric",
        output_field=DecimalField(max_digits=65, decimal_places=30),
    )


def json_moment(field: str, path: str) -> Func:
    return Func(
        json_value(field, path), function="cdphub_jsonb_timestamptz", output_field=DateTimeField()
    )


def json_type(field: str, path: str) -> Func:
    return Func(json_value(field, path), function="jsonb_typeof", output_field=TextField())


def definite(lookup) -> Q:
    """A comparison that is false, not NULL, when the value is missing or of another type."""
    return Q(Coalesce(lookup, Value(False), output_field=BooleanField()))


def nested(path: str, value: Any) -> dict:
    document = value
    for part in reversed(path.split(".")):
        document = {part: document}
    return document


def value_compare(
    field: str, path: str, op: str, value: Any = None, *, has_value: bool = True
) -> Q:
    """The condition ``<field>.<path> <op> <value>`` for a validated operator and value."""
    if op == "exists":
        present = Q(json_value(field, path).get_lookup("isnull")(json_value(field, path), False))
        return ~present if has_value and value is False else present
    if op == "eq":
        return equals(field, path, value)
    if op == "neq":
        return value_compare(field, path, "exists") & ~equals(field, path, value)
    if op == "in":
        result = Q()
        for item in value:
            result |= equals(field, path, item)
        return result
    if op == "not_in":
        return value_compare(field, path, "exists") & ~value_compare(field, path, "in", value)
    if op == "contains":
        return contains(field, path, value)
    if op == "starts_with":
        return definite(IStartsWith(json_text(field, path), value))
    return ordering(field, path, op, value)


def equals(field: str, path: str, value: Any) -> Q:
    if is_number(value):
        return definite(Exact(json_number(field, path), Decimal(str(value))))
    if any(part.isdigit() for part in path.split(".")):
        # An array index in the path: containment would read it as an object key.
        target = json_value(field, path)
        return definite(target.get_lookup("exact")(target, value))
    # Containment uses the GIN index on the document.
    return Q(**{f"{field}__contains": nested(path, value)})


def contains(field: str, path: str, value: str) -> Q:
    """Substring of the value's text (case-insensitive), or an element of a list value."""
    in_text = definite(IContains(json_text(field, path), value))
    in_list = Q(**{f"{field}__contains": nested(path, [value])})
    return in_text | in_list


def ordering(field: str, path: str, op: str, value: Any) -> Q:
    lookup = ORDERING[op]
    if is_number(value):
        return definite(lookup(json_number(field, path), Decimal(str(value))))
    moment = parse_moment(value)
    if moment is not None:
        op, bound = moment_bound(op, moment)
        return definite(ORDERING[op](json_moment(field, path), bound))
    is_string = Exact(json_type(field, path), "string")
    return definite(is_string) & definite(lookup(json_text(field, path), value))


def moment_bound(op: str, moment: dt.datetime | dt.date) -> tuple[str, dt.datetime]:
    """A date compares as the whole day: ``gt 2024-05-01`` means from May 2nd on."""
    if isinstance(moment, dt.datetime):
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, dt.UTC)
        return op, moment
    start = dt.datetime.combine(moment, dt.time.min, tzinfo=dt.UTC)
    next_day = start + dt.timedelta(days=1)
    return {
        "gt": ("gte", next_day),
        "gte": ("gte", start),
        "lt": ("lt", start),
        "lte": ("lt", next_day),
    }[op]
