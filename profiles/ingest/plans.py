"""Tracking plans: the events a source may send and the properties of each, as JSON Schema, and
what happens to an event that breaks its plan. Every rule of them is here; the admin, the API
and processing call it. In the order things happen:

1. Writing a plan (``tracking_plan_create``/``_update``/``_changed``/``_delete``): each event's
   JSON Schema is checked against its draft's meta-schema by ``jsonschema``, and what it cannot
   see is refused too (a format no checker checks, a reference outside the schema), each
   refusal naming where (``events[2].schema: at properties.price.type: ...``). Every change
   raises the plan's version.
2. Processing (``staged_check``, called by ``profiles.ingest.processing`` on each claimed batch,
   before identities are resolved): the plans of the batch's sources are compiled once per plan
   version and kept per process; each message is checked against its event's schema, and the
   source's actions applied: allow and flag, omit the offending properties (the staged payload
   is rewritten before the events are built from it), or block (the message goes to the
   rejected messages with its reason). Events the plan does not name are allowed or blocked.
3. Recording (``PlanCheck.violations_record``): one upsert per batch into the daily counts per
   event, property and kind, keeping the latest few examples.
4. Reading: ``violations_summary`` (a plan's counts over the last days), ``examples_shown``
   (examples masked for those who may not see personal data), ``observed_events`` (what a source
   sends, from a bounded sample of its recent events) and ``tracking_plan_generate`` (a draft
   plan from it).

One module past 400 lines, kept whole: the rules of a plan (what a schema may say, what a
violation is, what omitting removes, what is recorded) are one story and are read together."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta

import orjson
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import specification_with

from cdphub.audit import audit_record
from cdphub.pii import mask_trait
from cdphub.sql import execute
from profiles.models import (
    Event,
    PendingMessage,
    RejectedMessage,
    Source,
    TrackingPlan,
    TrackingPlanEvent,
    TrackingPlanSource,
    TrackingPlanViolation,
)
from profiles.resolution.batch import Staged, identify_traits

logger = logging.getLogger(__name__)

Kind = TrackingPlanViolation.Kind
ViolationAction = TrackingPlanSource.ViolationAction
UnplannedAction = TrackingPlanSource.UnplannedAction

EXAMPLES_KEPT = 5
MAX_PLAN_EVENTS = 2000
MAX_SCHEMA_BYTES = 65_536
# jsonschema checks a schema recursively: deeper ones are refused before it is asked.
MAX_SCHEMA_DEPTH = 32
MAX_EXAMPLE_CHARS = 500
MAX_REASONS = 10
# Identify and group calls have one schema for their traits, under an empty name.
NAMELESS_TYPES = frozenset({TrackingPlanEvent.Type.IDENTIFY, TrackingPlanEvent.Type.GROUP})
# Track events are always checked; the other types only when the plan names some of them.
ALWAYS_CHECKED = frozenset({TrackingPlanEvent.Type.TRACK})
JSON_TYPES = "string, number, integer, boolean, object, array, null"
VIOLATION_TABLE = TrackingPlanViolation._meta.db_table
PENDING_TABLE = PendingMessage._meta.db_table


# --- 1. Writing a plan ----------------------------------------------------------------------------


def schema_errors(schema: object) -> list[str]:
    """What is wrong with the JSON Schema of an event's properties, each message saying where
    (``at properties.price.type: ...``); empty when it can be used."""
    if not isinstance(schema, dict):
        return ['must be a JSON object (a JSON Schema), e.g. {"type": "object"}']
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return [f"is nested deeper than {MAX_SCHEMA_DEPTH} levels"]
    try:
        size = len(orjson.dumps(schema))
    except orjson.JSONEncodeError:
        return ["holds a number beyond 64 bits"]
    if size > MAX_SCHEMA_BYTES:
        return [f"is larger than {MAX_SCHEMA_BYTES} bytes"]
    try:
        cls = validator_for(schema, default=Draft202012Validator)
    except Exception:  # an unknown "$schema" URI
        return [f"at $schema: unknown JSON Schema draft {schema.get('$schema')!r}"]
    meta = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    error = best_match(meta.iter_errors(schema))
    if error is not None:
        path = list(error.absolute_path)
        hint = f" (types: {JSON_TYPES})" if path and path[-1] == "type" else ""
        return [f"at {_where(error.absolute_path)}: {error.message}{hint}"]
    problems = []
    if schema.get("type", "object") != "object":
        problems.append(
            'at type: the properties of an event are a JSON object: use "object" or leave it out'
        )
    known_formats = set(cls.FORMAT_CHECKER.checkers)
    resolver = Registry().resolver_with_root(
        Resource.from_contents(schema, default_specification=_specification(cls))
    )
    for path, node in _subschemas(schema):
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt not in known_formats:
            problems.append(
                f"at {_where([*path, 'format'])}: the format {fmt!r} is not checked here; "
                f"checked formats: {', '.join(sorted(known_formats))}"
            )
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#"):
                problems.append(
                    f"at {_where([*path, '$ref'])}: only references inside this schema "
                    "(#/$defs/...) are allowed"
                )
                continue
            try:
                resolver.lookup(ref)
            except (Unresolvable, ValueError, LookupError, TypeError):
                problems.append(f"at {_where([*path, '$ref'])}: {ref!r} points at nothing")
    return problems


def _depth(node: object, limit: int = MAX_SCHEMA_DEPTH + 1) -> int:
    """How deep a JSON value nests, counted up to ``limit`` (so a hostile one costs little)."""
    if limit <= 0 or not isinstance(node, dict | list):
        return 0
    children = node.values() if isinstance(node, dict) else node
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)


def _specification(cls):
    return specification_with(cls.META_SCHEMA.get("$schema", ""))


# Keywords whose values are data, not schemas: never searched for formats or references.
DATA_KEYWORDS = frozenset({"enum", "const", "examples", "default"})


def _subschemas(node: object, path: tuple = ()):
    """(path, dict) of every object in a schema that may be a schema."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key not in DATA_KEYWORDS:
                yield from _subschemas(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _subschemas(value, (*path, index))


def _where(path) -> str:
    """``properties.price.type``, ``allOf[1].required`` or ``the top`` for an empty path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top"


def events_validate(events: list[dict]) -> None:
    """Refuse a plan's events with a message per event and field: a bad schema, a name that
    does not fit its type, the same event twice."""
    errors: dict[str, list[str]] = {}
    if len(events) > MAX_PLAN_EVENTS:
        raise ValidationError({"events": [f"a plan has at most {MAX_PLAN_EVENTS} events"]})
    seen: dict[tuple[str, str], int] = {}
    for index, event in enumerate(events):
        kind, name = event.get("type", TrackingPlanEvent.Type.TRACK), event.get("name") or ""
        if kind in NAMELESS_TYPES and name:
            errors[f"events[{index}].name"] = [
                f"{kind} calls have one schema for their traits: leave the name empty"
            ]
        if kind == TrackingPlanEvent.Type.TRACK and not name:
            errors[f"events[{index}].name"] = ["a track event needs its name"]
        if (kind, name) in seen:
            errors[f"events[{index}].name"] = [
                f"the {kind} event {name!r} is planned twice (also events[{seen[(kind, name)]}])"
            ]
        seen.setdefault((kind, name), index)
        problems = schema_errors(event.get("schema", {}))
        if problems:
            errors[f"events[{index}].schema"] = problems
    if errors:
        raise ValidationError(errors)


def event_errors(event: dict) -> dict[str, list[str]]:
    """What is wrong with one planned event, by field (``name``, ``schema``): the check of
    ``events_validate`` for a form that edits one event at a time."""
    try:
        events_validate([event])
    except ValidationError as refused:
        return {key.split(".", 1)[1]: value for key, value in refused.message_dict.items()}
    return {}


def _sources_validate(plan: TrackingPlan | None, sources: list[dict]) -> None:
    errors: dict[str, list[str]] = {}
    seen: set[int] = set()
    others = dict(
        TrackingPlanSource.objects.filter(source__in=[s["source"] for s in sources])
        .exclude(plan=plan)
        .values_list("source_id", "plan__name")
    )
    for index, link in enumerate(sources):
        source = link["source"]
        if source.pk in seen:
            errors[f"sources[{index}].source"] = [f"the source {source.name!r} is listed twice"]
        elif source.pk in others:
            errors[f"sources[{index}].source"] = [
                f"the source {source.name!r} follows the tracking plan {others[source.pk]!r}: "
                "a source follows at most one plan, remove it there first"
            ]
        seen.add(source.pk)
    if errors:
        raise ValidationError(errors)


def _events_replace(plan: TrackingPlan, events: list[dict]) -> None:
    plan.events.all().delete()
    TrackingPlanEvent.objects.bulk_create(
        TrackingPlanEvent(
            plan=plan,
            type=event.get("type", TrackingPlanEvent.Type.TRACK),
            name=event.get("name") or "",
            description=event.get("description", ""),
            schema=event.get("schema", {}),
        )
        for event in events
    )


def _sources_replace(plan: TrackingPlan, sources: list[dict]) -> None:
    plan.sources.all().delete()
    try:
        with transaction.atomic():
            TrackingPlanSource.objects.bulk_create(
                TrackingPlanSource(
                    plan=plan,
                    source=link["source"],
                    violation_action=link.get("violation_action", ViolationAction.ALLOW),
                    unplanned_event_action=link.get(
                        "unplanned_event_action", UnplannedAction.ALLOW
                    ),
                )
                for link in sources
            )
    except IntegrityError:  # another plan took one of the sources meanwhile
        raise ValidationError(
            {"sources": ["one of the sources was given to another tracking plan meanwhile"]}
        ) from None


@transaction.atomic
def tracking_plan_create(
    *,
    name: str,
    description: str = "",
    status: str = TrackingPlan.Status.DRAFT,
    events: list[dict] | None = None,
    sources: list[dict] | None = None,
    actor=None,
) -> TrackingPlan:
    """A new plan with its events (``type``, ``name``, ``description``, ``schema``) and the
    sources that follow it (``source``, ``violation_action``, ``unplanned_event_action``)."""
    events, sources = list(events or []), list(sources or [])
    events_validate(events)
    _sources_validate(None, sources)
    if TrackingPlan.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"a tracking plan named {name!r} exists already"]})
    plan = TrackingPlan.objects.create(
        name=name,
        description=description,
        status=status,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    _events_replace(plan, events)
    _sources_replace(plan, sources)
    audit_record(
        actor=actor,
        action="tracking_plan.create",
        obj=plan,
        note=f"{status}, {len(events)} events, sources {[s['source'].pk for s in sources]}",
    )
    return plan


@transaction.atomic
def tracking_plan_update(
    *,
    plan: TrackingPlan,
    actor=None,
    events: list[dict] | None = None,
    sources: list[dict] | None = None,
    **changes,
) -> TrackingPlan:
    """Change a plan's name, description or status, replace its events or its sources (those
    given); the version goes up, so processing compiles the plan again."""
    unknown = set(changes) - {"name", "description", "status"}
    if unknown:
        raise ValueError(f"not a field of a tracking plan: {', '.join(sorted(unknown))}")
    if events is not None:
        events = list(events)
        events_validate(events)
    if sources is not None:
        sources = list(sources)
        _sources_validate(plan, sources)
    name = changes.get("name")
    if name and TrackingPlan.objects.filter(name=name).exclude(pk=plan.pk).exists():
        raise ValidationError({"name": [f"a tracking plan named {name!r} exists already"]})
    for key, value in changes.items():
        setattr(plan, key, value)
    plan.save()
    if events is not None:
        _events_replace(plan, events)
    if sources is not None:
        _sources_replace(plan, sources)
    said = [
        *changes,
        *(name for name, given in (("events", events), ("sources", sources)) if given is not None),
    ]
    tracking_plan_changed(plan=plan, actor=actor, note=f"changed: {', '.join(said)}")
    return plan


def tracking_plan_changed(
    *, plan: TrackingPlan, actor=None, note: str = "", created: bool = False
) -> None:
    """A plan's events or settings were written (by an update, or by the admin's forms after
    ``event_errors`` passed them): a changed plan gets its next version, and either gets a
    line in the audit trail."""
    if created:
        audit_record(actor=actor, action="tracking_plan.create", obj=plan, note=note)
        return
    TrackingPlan.objects.filter(pk=plan.pk).update(version=F("version") + 1)
    plan.refresh_from_db(fields=["version"])
    audit_record(
        actor=actor,
        action="tracking_plan.update",
        obj=plan,
        note=f"version {plan.version}; {note}".strip("; "),
    )


@transaction.atomic
def tracking_plan_delete(*, plan: TrackingPlan, actor=None) -> None:
    audit_record(actor=actor, action="tracking_plan.delete", obj=plan, note=plan.name)
    plan.delete()


# --- 2. Processing --------------------------------------------------------------------------------

# Root keywords a schema may use for the piecewise check below; anything else (allOf, if,
# patternProperties, references...) is checked by jsonschema on the whole document.
ANNOTATIONS = frozenset(
    {"$schema", "$comment", "title", "description", "examples", "default", "deprecated"}
)
PIECEWISE_KEYWORDS = ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
MEMO_SIZE = 8192
MEMO_MAX_TEXT = 256
MEMO_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Conformance:
    """Whether one event's properties conform to its schema, as fast as the budget of
    processing needs (a plan may cost it at most a tenth).

    jsonschema checks each property by creating a validator for its subschema, per message:
    about 40 us for eight properties. The common plan (an object of named properties, some
    required, perhaps no others allowed) is checked piecewise instead, still by jsonschema: the
    object's keys against the root's ``required`` and ``additionalProperties`` (the same for
    every message with the same keys, so remembered by key tuple), and each value against its
    own property's validator, remembered per value (a currency, a category, a SKU, a list of
    tags repeat; lists and objects by their JSON text). A document found wrong is checked again
    whole, for jsonschema's own errors."""

    def __init__(self, schema: dict):
        cls = validator_for(schema, default=Draft202012Validator)
        self.validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        self.shell = None
        if _piecewise(schema):
            properties = schema.get("properties", {})
            shell = {key: value for key, value in schema.items() if key != "properties"}
            shell["properties"] = dict.fromkeys(properties, True)
            self.shell = cls(shell)
            self.leaves = {
                key: cls(sub, format_checker=cls.FORMAT_CHECKER) for key, sub in properties.items()
            }
            self.shapes: dict[tuple, bool] = {}
            self.values: dict[tuple, bool] = {}

    def conforms(self, document: dict) -> bool:
        if self.shell is None:
            return self.validator.is_valid(document)
        shape = tuple(document)
        fits = self.shapes.get(shape)
        if fits is None:
            if len(self.shapes) >= MEMO_SIZE:
                self.shapes.clear()
            fits = self.shapes[shape] = self.shell.is_valid(document)
        if not fits:
            return False
        values = self.values
        for key, value in document.items():
            leaf = self.leaves.get(key)
            if leaf is None:
                continue
            kind = type(value)
            if kind in MEMO_SCALARS:
                memo = (key, kind, value)
            else:  # a list or an object, remembered by its JSON text when short
                text = orjson.dumps(value)
                memo = (key, bytes, text)
                if len(text) > MEMO_MAX_TEXT:
                    memo = None
            if memo is None or (kind is str and len(value) > MEMO_MAX_TEXT):
                valid = leaf.is_valid(value)
            else:
                valid = values.get(memo)
                if valid is None:
                    if len(values) >= MEMO_SIZE:
                        values.clear()
                    valid = values[memo] = leaf.is_valid(value)
            if not valid:
                return False
        return True


def _piecewise(schema: dict) -> bool:
    text = orjson.dumps(schema)
    return (
        set(schema) <= PIECEWISE_KEYWORDS
        and schema.get("type", "object") == "object"
        and isinstance(schema.get("properties", {}), dict)
        and isinstance(schema.get("additionalProperties", True), bool)
        and b'"$ref"' not in text
        and b'"$dynamicRef"' not in text
        and b'"$recursiveRef"' not in text
    )


@dataclass
class CompiledPlan:
    id: int
    version: int
    name: str
    events: dict[tuple[str, str], _Conformance | None]
    checked_types: frozenset[str]


# Per process: plan id -> its compiled version. Replaced when the version read is another one.
_compiled: dict[int, CompiledPlan] = {}


def compiled_plan(plan_id: int, version: int) -> CompiledPlan:
    plan = _compiled.get(plan_id)
    if plan is None or plan.version != version:
        plan = _compiled[plan_id] = _compile(plan_id, version)
    return plan


def _compile(plan_id: int, version: int) -> CompiledPlan:
    name = TrackingPlan.objects.filter(pk=plan_id).values_list("name", flat=True).first() or ""
    events: dict[tuple[str, str], _Conformance | None] = {}
    for kind, event_name, schema in TrackingPlanEvent.objects.filter(plan_id=plan_id).values_list(
        "type", "name", "schema"
    ):
        try:
            events[(kind, event_name)] = _Conformance(schema)
        except Exception:  # a schema stored before a rule refused it: the event is not checked
            logger.exception("tracking plan %s: the schema of %s %r", plan_id, kind, event_name)
            events[(kind, event_name)] = None
    checked = ALWAYS_CHECKED | {kind for kind, _ in events}
    return CompiledPlan(plan_id, version, name, events, frozenset(checked))


@dataclass
class Found:
    """One violation in one message."""

    kind: str
    path: tuple = ()
    value: object = None
    expected: str = ""

    @property
    def label(self) -> str:
        return property_label(self.path)


@dataclass
class Link:
    plan: CompiledPlan
    violation_action: str
    unplanned_event_action: str


@dataclass
class Flagged:
    row: Staged
    link: Link
    event_type: str
    event_name: str
    found: list[Found]
    blocked: bool


@dataclass
class PlanCheck:
    """What the plans said about one claimed batch: the messages to block, the ones whose
    payload lost properties, and every violation, recorded once the batch's events are in."""

    flagged: dict[int, Flagged] = field(default_factory=dict)
    omitted: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)

    def blocked_reject(self, rows: list[Staged]) -> list[Staged]:
        """Move the blocked messages among ``rows`` to the rejected messages, with the reason;
        returns the others."""
        blocked = [row for row in rows if row.id in self.flagged and self.flagged[row.id].blocked]
        if not blocked:
            return rows
        RejectedMessage.objects.bulk_create(
            RejectedMessage(
                source_id=row.source_id,
                message_id=row.message_id,
                type=row.type,
                payload=row.payload,
                reason=_block_reason(self.flagged[row.id]),
                received_at=row.received_at,
            )
            for row in blocked
        )
        PendingMessage.objects.filter(pk__in=[row.id for row in blocked]).delete()
        self.rejected |= {row.id for row in blocked}
        return [row for row in rows if row.id not in self.rejected]

    def omissions_store(self, rows: list[Staged]) -> None:
        """The staged payloads of ``rows`` that lost properties are rewritten: the events are
        built from them by the database."""
        changed = [row for row in rows if row.id in self.omitted]
        if changed:
            execute(
                f"UPDATE {PENDING_TABLE} AS pm SET payload = u.payload::jsonb "  # noqa: S608 - table names from model metadata; values are parameters
                "FROM unnest(%b::bigint[], %b::text[]) AS u(id, payload) WHERE pm.id = u.id",
                [[row.id for row in changed], [_json(row.payload) for row in changed]],
            )

    def violations_record(self, processed: list[Staged]) -> None:
        """Count the violations of the processed and the blocked messages (the others stay
        staged and are checked again when claimed again)."""
        done = {row.id for row in processed} | self.rejected
        counts: dict[tuple, list] = {}
        for row_id, flagged in self.flagged.items():
            if row_id not in done:
                continue
            row = flagged.row
            at = row.received_at
            for found in _dedupe(flagged.found):
                key = (
                    at.astimezone(UTC).date(),
                    flagged.link.plan.id,
                    row.source_id,
                    flagged.event_type,
                    flagged.event_name,
                    found.label,
                    found.kind,
                )
                entry = counts.setdefault(key, [0, 0, [], at, at])
                entry[0] += 1
                entry[1] += int(flagged.blocked)
                entry[2].append(_example(row, found, flagged.blocked))
                entry[3], entry[4] = min(entry[3], at), max(entry[4], at)
        if counts:
            _violations_upsert(counts)


def staged_check(rows: list[Staged]) -> PlanCheck:
    """Check claimed messages against their sources' active plans, applying each source's
    actions: omitted properties leave ``row.payload`` at once; blocking happens in
    ``PlanCheck.blocked_reject``."""
    check = PlanCheck()
    links = _links({row.source_id for row in rows})
    if not links:
        return check
    for row in rows:
        link = links.get(row.source_id)
        if link is not None and row.type in link.plan.checked_types:
            try:
                _row_check(check, row, link)
            except Exception:  # a bug or a schema jsonschema chokes on: the message goes on
                logger.exception("tracking plan %s: checking message %s", link.plan.id, row.id)
    return check


def _links(source_ids: set[int]) -> dict[int, Link]:
    rows = TrackingPlanSource.objects.filter(
        source_id__in=source_ids, plan__status=TrackingPlan.Status.ACTIVE
    ).values_list(
        "source_id", "plan_id", "plan__version", "violation_action", "unplanned_event_action"
    )
    return {
        source_id: Link(compiled_plan(plan_id, version), violation, unplanned)
        for source_id, plan_id, version, violation, unplanned in rows
    }


def _row_check(check: PlanCheck, row: Staged, link: Link) -> None:
    payload = row.payload
    document = event_document(payload, row.type)
    name = "" if row.type in NAMELESS_TYPES else event_name(payload, row.type, document)
    planned = link.plan.events.get((row.type, name), False)
    if planned is False:
        blocked = link.unplanned_event_action == UnplannedAction.BLOCK
        found = [Found(Kind.UNPLANNED_EVENT, expected="not in the plan")]
        check.flagged[row.id] = Flagged(row, link, row.type, name, found, blocked)
        return
    if planned is None or planned.conforms(document):
        return
    found = violations_of(planned.validator, document)
    if not found:
        return
    action = link.violation_action
    if action == ViolationAction.OMIT and _omit(document, found):
        _document_store(payload, row.type, document)
        check.omitted.add(row.id)
    blocked = action == ViolationAction.BLOCK
    check.flagged[row.id] = Flagged(row, link, row.type, name, found, blocked)


def event_document(payload: dict, message_type: str) -> dict:
    """What the plan describes, as the event will store it: track, page and screen properties
    (a page's category sent beside its name included), identify and group traits. The
    payload's own object where it has one, so omitting from it changes the message."""
    if message_type == TrackingPlanEvent.Type.IDENTIFY:
        return identify_traits(payload)
    if message_type == TrackingPlanEvent.Type.GROUP:
        traits = payload.get("traits")
        return traits if isinstance(traits, dict) else {}
    properties = payload.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    category = payload.get("category")
    if message_type in ("page", "screen") and category is not None:
        return {"category": category, **properties}
    return properties


def _document_store(payload: dict, message_type: str, document: dict) -> None:
    """After an omission: a page's or screen's properties were a merged copy, written back
    (the category among them, as processing would store it anyway)."""
    if message_type in ("page", "screen"):
        payload["properties"] = document
        payload.pop("category", None)


def event_name(payload: dict, message_type: str, document: dict) -> str:
    """The event's name as processing stores it (``batch.EVENTS_SQL``)."""
    if message_type == TrackingPlanEvent.Type.TRACK:
        value = payload.get("event")
    else:
        value = payload.get("name")
        if value is None:
            value = document.get("name")
    if value is None:
        return ""
    return (value if isinstance(value, str) else _json(value))[:255]


def violations_of(validator, document: dict) -> list[Found]:
    """jsonschema's errors as violations, one per property and kind."""
    found: dict[tuple, Found] = {}

    def add(kind: str, path: tuple, value: object = None, expected: str = "") -> None:
        found.setdefault((kind, path), Found(kind, path, value, expected))

    for error in validator.iter_errors(document):
        path = tuple(error.absolute_path)
        instance = error.instance
        if error.validator == "required" and isinstance(instance, dict):
            for name in error.validator_value:
                if name not in instance:
                    add(Kind.MISSING_REQUIRED, (*path, name), None, "required")
        elif (
            error.validator in ("additionalProperties", "unevaluatedProperties")
            and error.validator_value is False
            and isinstance(instance, dict)
        ):
            for name in _extra_keys(error.schema, instance):
                add(Kind.UNPLANNED_PROPERTY, (*path, name), instance[name], "not in the plan")
        else:
            add(Kind.WRONG_TYPE, path, instance, _expected(error))
    return list(found.values())


def _extra_keys(schema: dict, instance: dict) -> list[str]:
    named = schema.get("properties", {}) if isinstance(schema, dict) else {}
    patterns = schema.get("patternProperties", {}) if isinstance(schema, dict) else {}
    return [
        key
        for key in instance
        if key not in named and not any(re.search(pattern, key) for pattern in patterns)
    ]


def _expected(error) -> str:
    """What the plan asks, from the schema (never the value sent): ``type: number``."""
    if error.validator is None:
        return "not allowed"
    value = error.validator_value
    text = value if isinstance(value, str) else _json(value)
    return f"{error.validator}: {text}"[:200]


def property_label(path: tuple) -> str:
    """A property's path with list positions left out, so counts add up: products[].price."""
    text = ""
    for part in path:
        text += "[]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text[:255]


def _omit(document: dict, found: list[Found]) -> bool:
    """Remove the offending properties: a value of the wrong type or format (the innermost
    named property holding it: ``products[2].price``, or the whole ``tags`` for a bad item),
    or one the plan does not allow. Nothing to remove for a missing one."""
    removed = False
    for violation in found:
        if violation.kind not in (Kind.WRONG_TYPE, Kind.UNPLANNED_PROPERTY):
            continue
        named = [i for i, part in enumerate(violation.path) if isinstance(part, str)]
        if not named:
            continue
        *parents, key = violation.path[: named[-1] + 1]
        container = document
        try:
            for part in parents:
                container = container[part]
            if isinstance(container, dict) and key in container:
                del container[key]
                removed = True
        except (KeyError, IndexError, TypeError):
            continue  # a parent removed already
    return removed


def _block_reason(flagged: Flagged) -> str:
    plan = flagged.link.plan
    parts = []
    for found in flagged.found[:MAX_REASONS]:
        if found.kind == Kind.UNPLANNED_EVENT:
            parts.append(f"the {flagged.event_type} event {flagged.event_name!r} is not planned")
        else:
            label = Kind(found.kind).label.lower()
            parts.append(f"{found.label or 'properties'}: {label} ({found.expected})")
    more = len(flagged.found) - MAX_REASONS
    if more > 0:
        parts.append(f"and {more} more")
    return f"blocked by the tracking plan {plan.name!r} (version {plan.version}): " + "; ".join(
        parts
    )


def _dedupe(found: list[Found]) -> list[Found]:
    """One count per event and property and kind, however many list items broke it."""
    seen, kept = set(), []
    for violation in found:
        key = (violation.label, violation.kind)
        if key not in seen:
            seen.add(key)
            kept.append(violation)
    return kept


def _example(row: Staged, found: Found, blocked: bool) -> dict:
    return {
        "message_id": row.message_id,
        "value": _example_value(found.value),
        "expected": found.expected,
        "profile": row.profile if row.profile > 0 and not blocked else None,
        "at": row.received_at.astimezone(UTC).isoformat(),
        "blocked": blocked,
        "key": found.path[-1] if found.path and isinstance(found.path[-1], str) else "",
    }


def _example_value(value: object) -> object:
    if isinstance(value, str):
        return value[:MAX_EXAMPLE_CHARS]
    if isinstance(value, dict | list):
        text = _json(value)
        return value if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + "..."
    return value


# One row per day, plan, source, event, property and kind; the examples are the newest few.
# Keys are written in sorted order, so two workers never wait on each other's rows in turn.
UPSERT_SQL = f"""
    INSERT INTO {VIOLATION_TABLE} AS v
        (day, plan_id, source_id, event_type, event_name, property, kind, count, blocked,
         examples, first_seen_at, last_seen_at)
    SELECT d, p, s, t, n, pr, k, c, b, e::jsonb, f, l
    FROM unnest(%b::date[], %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[],
        %b::text[], %b::bigint[], %b::bigint[], %b::text[], %b::timestamptz[],
        %b::timestamptz[]) AS u(d, p, s, t, n, pr, k, c, b, e, f, l)
    ON CONFLICT (day, plan_id, source_id, event_type, event_name, property, kind) DO UPDATE SET
        count = v.count + excluded.count,
        blocked = v.blocked + excluded.blocked,
        examples = (
            SELECT coalesce(jsonb_agg(x.e ORDER BY x.n), '[]'::jsonb)
            FROM jsonb_array_elements(excluded.examples || v.examples) WITH ORDINALITY AS x(e, n)
            WHERE x.n <= {EXAMPLES_KEPT}
        ),
        first_seen_at = least(v.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(v.last_seen_at, excluded.last_seen_at)
"""  # noqa: S608 - table names from model metadata; values are parameters


def _violations_upsert(counts: dict[tuple, list]) -> None:
    keys = sorted(counts)
    columns: list[list] = [[] for _ in range(12)]
    for key in keys:
        count, blocked, examples, first, last = counts[key]
        newest = list(reversed(examples))[:EXAMPLES_KEPT]
        for column, value in zip(
            columns, (*key, count, blocked, _json(newest), first, last), strict=True
        ):
            column.append(value)
    execute(UPSERT_SQL, columns)


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


# --- 4. Reading -----------------------------------------------------------------------------------


def violations_summary(*, plan: TrackingPlan, days: int = 7) -> list[dict]:
    """A plan's violations of the last ``days`` days per source, event, property and kind,
    most frequent first, with the latest examples (as stored: mask them with
    ``examples_shown``)."""
    since = timezone.now().date() - timedelta(days=days - 1)
    rows = (
        TrackingPlanViolation.objects.filter(plan=plan, day__gte=since)
        .values("source", "event_type", "event_name", "property", "kind")
        .annotate(count=Sum("count"), blocked=Sum("blocked"), last_seen_at=Max("last_seen_at"))
        .order_by("-count", "event_name", "property")
    )
    summary = list(rows[:500])
    examples: dict[tuple, list] = {}
    keys = ("source", "event_type", "event_name", "property", "kind")
    latest = (
        TrackingPlanViolation.objects.filter(plan=plan, day__gte=since)
        .order_by("-day")
        .values_list(*keys, "examples")
    )
    for *key, found in latest.iterator():
        kept = examples.setdefault(tuple(key), [])
        if len(kept) < EXAMPLES_KEPT:
            kept.extend(found[: EXAMPLES_KEPT - len(kept)])
    for row in summary:
        row["examples"] = examples.get(tuple(row[key] for key in keys), [])
    return summary


def examples_shown(examples: list[dict], *, pii: bool) -> list[dict]:
    """Examples as a reader sees them: values masked the way payloads are (personal keys,
    e-mail addresses and phone numbers) for those who may not see personal data."""
    if pii:
        return examples
    return [
        {**example, "value": mask_trait(example.get("key") or "", example.get("value"))}
        for example in examples
    ]


def example_text(value: object) -> str:
    """An example's value as text to show: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else _json(value)


OBSERVED_DAYS = 7
OBSERVED_SAMPLE = 10_000
MAX_OBSERVED_PROPERTIES = 200


@dataclass
class ObservedProperty:
    name: str
    types: list[str]
    seen: int
    required: bool


@dataclass
class ObservedEvent:
    type: str
    name: str
    count: int
    properties: list[ObservedProperty]


@dataclass
class Observed:
    source: int
    days: int
    sampled: int
    events: list[ObservedEvent]


def observed_events(
    *, source: Source, days: int = OBSERVED_DAYS, sample: int = OBSERVED_SAMPLE
) -> Observed:
    """The events a source sent lately and the JSON types of their top-level properties,
    from at most ``sample`` of its events of the last ``days`` days, the newest days first
    (one bounded query per day on the event time, never a scan of all its events). A property
    seen in every sampled event of its name counts as required."""
    now = timezone.now()
    stats: dict[tuple[str, str], dict] = {}
    sampled = 0
    for back in range(days):
        if sampled >= sample:
            break
        end = now - timedelta(days=back)
        rows = (
            Event.objects.filter(
                source=source, timestamp__gt=end - timedelta(days=1), timestamp__lte=end
            )
            .exclude(type=Event.Type.ALIAS)
            .order_by()
            .values_list("type", "name", "properties")[: sample - sampled]
        )
        for kind, name, properties in rows:
            sampled += 1
            key = (kind, "" if kind in NAMELESS_TYPES else name)
            entry = stats.setdefault(key, {"count": 0, "properties": {}})
            entry["count"] += 1
            for prop, value in (properties or {}).items():
                seen = entry["properties"].setdefault(prop, [0, set()])
                seen[0] += 1
                seen[1].add(json_type(value))
    events = []
    for (kind, name), entry in sorted(stats.items(), key=lambda item: (-item[1]["count"], item[0])):
        properties = [
            ObservedProperty(prop, _types(types), seen, seen == entry["count"])
            for prop, (seen, types) in sorted(entry["properties"].items())
        ][:MAX_OBSERVED_PROPERTIES]
        events.append(ObservedEvent(kind, name, entry["count"], properties))
    return Observed(source.pk, days, sampled, events[:MAX_PLAN_EVENTS])


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(types: set[str]) -> list[str]:
    if {"integer", "number"} <= types:
        types = types - {"integer"}
    return sorted(types)


def observed_schema(event: ObservedEvent) -> dict:
    """A JSON Schema of what was observed: each property's types, required when always sent."""
    schema: dict = {
        "type": "object",
        "properties": {
            prop.name: {"type": prop.types[0] if len(prop.types) == 1 else prop.types}
            for prop in event.properties
        },
    }
    required = [prop.name for prop in event.properties if prop.required]
    if required:
        schema["required"] = required
    return schema


@transaction.atomic
def tracking_plan_generate(
    *, source: Source, name: str = "", days: int = OBSERVED_DAYS, actor=None
) -> TrackingPlan:
    """A draft plan of what ``source`` sent lately (``observed_events``), for a person to
    review and activate; the source follows it if it follows no plan yet."""
    observed = observed_events(source=source, days=days)
    if not observed.events:
        raise ValidationError(
            {"source": [f"{source.name!r} sent no events in the last {days} days to plan from"]}
        )
    name = name or _free_name(f"{source.name} (observed {date.today():%Y-%m-%d})")
    follows = TrackingPlanSource.objects.filter(source=source).exists()
    plan = tracking_plan_create(
        name=name,
        description=(
            f"Generated from {observed.sampled} events of {source.name} of the last {days} "
            "days: review the types and required properties before activating it."
        ),
        events=[
            {"type": event.type, "name": event.name, "schema": observed_schema(event)}
            for event in observed.events
        ],
        sources=[] if follows else [{"source": source}],
        actor=actor,
    )
    audit_record(
        actor=actor,
        action="tracking_plan.generate",
        obj=plan,
        note=f"from source {source.pk}: {observed.sampled} events of {days} days",
    )
    return plan


def _free_name(base: str) -> str:
    taken = set(
        TrackingPlan.objects.filter(name__startswith=base[:190]).values_list("name", flat=True)
    )
    name, number = base[:200], 2
    while name in taken:
        name = f"{base[:190]} {number}"
        number += 1
    return name
