"""The rule language's grammar, shared by every target (profiles here, visitors in the DMP).

A rule is a node: a group (``all``/``any`` over a list of nodes, ``not`` over one node) or a leaf.
Which leaves exist, how they are checked and how they become SQL is a *target*'s business: a
target is a table of leaves plus the queryset the rule filters. Groups, operators, error paths and
the limits against runaway rules live here, once.

Validation collects every problem with the path of the node it is in (``all[2].event.count.op``)
so an editor can fix them all at once; compilation assumes a validated rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from cdphub.errors import DomainError

GROUPS = ("all", "any", "not")
OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "exists",
)
ORDERING_OPERATORS = ("gt", "gte", "lt", "lte")
LIST_OPERATORS = ("in", "not_in")
TEXT_OPERATORS = ("contains", "starts_with")

MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST_VALUES = 1000


class RuleError(DomainError):
    """A rule that cannot be evaluated; ``problems`` is a list of ``{"path", "message"}``."""

    field = "rule"

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in problems))

    def errors(self) -> dict[str, list[str]]:
        return {self.field: self.messages}

    @property
    def messages(self) -> list[str]:
        return [
            f"{e['path']}: {e['message']}" if e["path"] else e["message"] for e in self.problems
        ]


@dataclass
class Context:
    """State of one validation or compilation: errors found, segments being expanded, etc."""

    target: Target
    errors: list[dict[str, str]] = field(default_factory=list)
    nodes: int = 0
    # Ids of the segments whose rules are being expanded, outermost first (cycle detection).
    segment_stack: tuple[int, ...] = ()
    now: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})


@dataclass(frozen=True)
class Leaf:
    """One kind of condition: ``validate(node, path, ctx)`` reports problems through
    ``ctx.error``; ``compile(node, ctx)`` returns a ``Q`` over the target's model;
    ``describe()`` tells the visual rule builder how to offer it (``profiles.segments.builder``
    says what it returns). A leaf without ``describe`` is shown by the builder as its JSON."""

    keys: frozenset[str]
    validate: Callable[[dict, str, Context], None]
    compile: Callable[[dict, Context], Q]
    help: str = ""
    describe: Callable[[], dict] | None = None


@dataclass(frozen=True)
class Target:
    """What a rule selects: a base queryset and the leaves that can filter it."""

    name: str
    leaves: dict[str, Leaf]
    base_queryset: Callable[[], QuerySet]


def join(path: str, part: str) -> str:
    if part.startswith("["):
        return f"{path}{part}"
    return f"{path}.{part}" if path else part


# --- validation ---------------------------------------------------------------------------------


def rule_check(rule: Any, ctx: Context) -> None:
    """Validate ``rule`` into ``ctx.errors`` (does not raise)."""
    if not isinstance(rule, dict) or not rule:
        ctx.error("", 'a rule must be a non-empty JSON object such as {"all": [...]}')
        return
    node_check(rule, "", ctx, depth=0)


def node_kind(node: dict, path: str, ctx: Context) -> str | None:
    kinds = [key for key in node if key in GROUPS or key in ctx.target.leaves]
    if len(kinds) == 1:
        return kinds[0]
    known = ", ".join([*GROUPS, *ctx.target.leaves])
    if not kinds:
        keys = ", ".join(sorted(node)) or "none"
        ctx.error(path, f"unknown condition (keys: {keys}); expected one of: {known}")
    else:
        ctx.error(path, f"a node has exactly one of {known}; found {', '.join(kinds)}")
    return None


def node_check(node: Any, path: str, ctx: Context, depth: int) -> None:
    ctx.nodes += 1
    if ctx.nodes > MAX_NODES:
        if ctx.nodes == MAX_NODES + 1:
            ctx.error(path, f"a rule may have at most {MAX_NODES} conditions")
        return
    if depth > MAX_DEPTH:
        ctx.error(path, f"groups may nest at most {MAX_DEPTH} levels deep")
        return
    if not isinstance(node, dict):
        ctx.error(path, f"expected a condition object, got {type_name(node)}")
        return
    kind = node_kind(node, path, ctx)
    if kind is None:
        return
    if kind in GROUPS:
        group_check(node, kind, path, ctx, depth)
        return
    leaf = ctx.target.leaves[kind]
    unknown = sorted(set(node) - leaf.keys - {kind})
    for key in unknown:
        ctx.error(
            join(join(path, kind), key), f"unknown key; allowed: {', '.join(sorted(leaf.keys))}"
        )
    leaf.validate(node, join(path, kind), ctx)


def group_check(node: dict, kind: str, path: str, ctx: Context, depth: int) -> None:
    for key in sorted(set(node) - {kind}):
        ctx.error(join(path, key), f"a '{kind}' group has no other keys")
    children = node[kind]
    if kind == "not":
        node_check(children, join(path, "not"), ctx, depth + 1)
        return
    if not isinstance(children, list) or not children:
        ctx.error(join(path, kind), "expected a non-empty list of conditions")
        return
    for index, child in enumerate(children):
        node_check(child, f"{join(path, kind)}[{index}]", ctx, depth + 1)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_moment(value: Any) -> dt.datetime | dt.date | None:
    """An ISO 8601 date or date-time string, or None."""
    if not isinstance(value, str):
        return None
    try:
        if len(value.strip()) == 10:  # a bare date means the whole day, not its midnight
            return parse_date(value.strip())
        return parse_datetime(value)
    except ValueError:
        return None


def comparison_check(
    node: dict, path: str, ctx: Context, *, operators: tuple[str, ...] = OPERATORS
) -> None:
    """Check ``op`` and ``value`` of a comparison on a JSON value (trait, property)."""
    op = node.get("op", "eq" if "value" in node else "exists")
    if op not in operators:
        ctx.error(
            join(path, "op"), f"unknown operator {op!r}; expected one of: {', '.join(operators)}"
        )
        return
    value = node.get("value")
    value_path = join(path, "value")
    if op == "exists":
        if "value" in node and not isinstance(value, bool):
            ctx.error(value_path, "'exists' takes true, false or no value")
        return
    if "value" not in node:
        ctx.error(value_path, f"operator {op!r} needs a value")
        return
    if op in LIST_OPERATORS:
        list_check(value, value_path, ctx)
    elif op in ORDERING_OPERATORS:
        if not (is_number(value) or isinstance(value, str)):
            ctx.error(
                value_path, f"{op!r} compares numbers, dates or strings, not {type_name(value)}"
            )
    elif op in TEXT_OPERATORS:
        if not isinstance(value, str) or not value:
            ctx.error(value_path, f"{op!r} needs a non-empty string, not {type_name(value)}")
    elif not scalar(value):
        ctx.error(value_path, f"{op!r} needs a JSON scalar, not {type_name(value)}")


def list_check(value: Any, path: str, ctx: Context) -> None:
    if not isinstance(value, list) or not value:
        ctx.error(path, f"expected a non-empty list of values, got {type_name(value)}")
        return
    if len(value) > MAX_LIST_VALUES:
        ctx.error(path, f"at most {MAX_LIST_VALUES} values")
    for index, item in enumerate(value):
        if not scalar(item) or item is None:
            ctx.error(
                f"{path}[{index}]", f"expected a string, number or boolean, got {type_name(item)}"
            )


def scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def path_check(value: Any, path: str, ctx: Context, what: str) -> None:
    """A dotted path into a JSON document: non-empty segments, no leading/trailing dots."""
    if not isinstance(value, str) or not value.strip():
        ctx.error(path, f"expected the {what} as a non-empty string, got {type_name(value)}")
        return
    if len(value) > 255:
        ctx.error(path, f"the {what} is longer than 255 characters")
    elif any(not part.strip() for part in value.split(".")):
        ctx.error(path, f"{value!r} has an empty segment; use dots only between names")


# --- compilation --------------------------------------------------------------------------------


def node_compile(node: dict, ctx: Context) -> Q:
    if "all" in node:
        return combine([node_compile(child, ctx) for child in node["all"]], all_of=True)
    if "any" in node:
        return combine([node_compile(child, ctx) for child in node["any"]], all_of=False)
    if "not" in node:
        return ~node_compile(node["not"], ctx)
    kind = next(key for key in node if key in ctx.target.leaves)
    return ctx.target.leaves[kind].compile(node, ctx)


def combine(parts: list[Q], *, all_of: bool) -> Q:
    result = parts[0]
    for part in parts[1:]:
        result = (result & part) if all_of else (result | part)
    return result
