"""Computed traits that marketers define (``ComputedTrait``): one rule for the admin, the API,
event processing and the scheduled jobs.

A definition is an aggregate over a profile's events of one type (and name), filtered by the
rule language's ``where`` and optionally by a window of the last N days. Every definition
becomes one aggregate column of a single grouped query over the profiles' events, joined back
into one ``UPDATE``, so ten definitions read the events once, not ten times:

- ``defined_traits_update(profile_ids=...)``: incremental, after events are processed (the
  coalesced refresh calls it through ``computed_traits_update``, which computes the built-in
  traits and then these);
- ``defined_traits_recompute(traits)``: every active profile in id-range batches (a new or
  changed definition, the nightly recompute); the same statement, so both agree;
- ``defined_windows_expire()``: a windowed value changes when events leave the window, not
  only when new ones come: the profiles with such events since the last check are computed
  again (a count "last 7 days" goes down when nothing happens).

Values are written to ``computed_traits[key]``; a count or a sum without events is 0, the
other kinds are left out without a value.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import reduce
from typing import Any

import orjson
from django.conf import settings
from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import (
    Aggregate,
    Avg,
    BooleanField,
    Count,
    DecimalField,
    Func,
    JSONField,
    Max,
    Min,
    Q,
    Sum,
)
from django.db.models.expressions import RawSQL
from django.db.models.lookups import In
from django.utils import timezone

from cdphub.deletion import DeleteProtected
from cdphub.pii import mask_trait
from cdphub.sql import any_of, execute, execute_without_jit, orm_sql, query
from profiles.models import (
    BUILT_IN_COMPUTED_KEYS,
    ComputedTrait,
    Destination,
    Event,
    Profile,
    Segment,
)
from profiles.segments.rules.jsonvalue import json_number, json_type, json_value, value_compare
from profiles.segments.rules.language import Context, path_check
from profiles.segments.rules.profile_target import PROFILES, where_validate

logger = logging.getLogger(__name__)

PROFILE = Profile._meta.db_table
NUMERIC_KINDS = {"sum", "average", "min", "max"}
# Kinds with a value for every profile in scope (no events: 0), so a rule "count < 3" also
# matches the profiles that never did it.
ZERO_KINDS = {"count", "sum"}
# jsonb_build_object takes at most 100 arguments (50 keys): definitions are computed in
# statements of this many.
TRAITS_PER_STATEMENT = 40
PREVIEW_SAMPLE = 1000
PREVIEW_TOP = 10
PREVIEW_DAYS = (7, 90)
# A property "has a value" for first, last, most frequent and unique: any JSON but null.
VALUE_TYPES = ["string", "number", "boolean", "object", "array"]


# --- definitions ---------------------------------------------------------------------------

# What a definition is made of: what the admin form and the API write, and what is checked.
DEFINITION_FIELDS = (
    "key",
    "name",
    "description",
    "kind",
    "event_type",
    "event_name",
    "property",
    "where",
    "window_days",
    "unique_limit",
)


def computed_trait_errors(trait: ComputedTrait) -> dict[str, list[str]]:
    """What is wrong with a definition, per field (empty when it can be saved)."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if trait.key in BUILT_IN_COMPUTED_KEYS:
        add("key", f"{trait.key!r} is a built-in computed trait; choose another key")
    elif not trait.key or not trait.key[0].isalpha() or not _is_key(trait.key):
        add("key", "lower-case letters, digits and _, starting with a letter (e.g. orders_eur)")
    if trait.kind == ComputedTrait.Kind.COUNT:
        if trait.property:
            add("property", "a count has no property: leave it empty")
    elif not trait.property:
        add("property", f"{trait.get_kind_display().lower()} needs the property to aggregate")
    else:
        ctx = Context(target=PROFILES)
        path_check(trait.property, "property", ctx, "property path")
        for error in ctx.errors:
            add("property", error["message"])
    ctx = Context(target=PROFILES)
    where_validate(trait.where, "where", ctx)
    for error in ctx.errors:
        add("where", f"{error['path']}: {error['message']}" if error["path"] else error["message"])
    if trait.pk is not None:
        saved_key = ComputedTrait.objects.filter(pk=trait.pk).values_list("key", flat=True).first()
        if saved_key is not None and saved_key != trait.key:
            add("key", f"the key cannot change once saved (it is {saved_key!r})")
    return errors


def _is_key(key: str) -> bool:
    return len(key) <= 64 and all(c.islower() or c.isdigit() or c == "_" for c in key)


def computed_trait_validate(trait: ComputedTrait) -> None:
    errors = computed_trait_errors(trait)
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def computed_trait_save(*, trait: ComputedTrait, by=None) -> ComputedTrait:
    """Validate and save a definition. Its values are then stale: the caller queues its
    computation for every profile once the save commits (``recompute_defined_trait_task``)."""
    computed_trait_validate(trait)
    if trait.pk is None and by is not None and getattr(by, "pk", None):
        trait.created_by = by
    trait.status = ComputedTrait.Status.NEW
    trait.last_error = ""
    trait.save()
    return trait


def computed_trait_users(trait: ComputedTrait) -> dict[str, list[str]]:
    """The segments and destinations whose rules read the trait (``computed`` leaves naming
    its key, anywhere in the rule), by plural label: deleting it would change what they
    select without anyone editing them."""
    key = trait.key if _is_key(trait.key) else ""  # a key that can go into a JSON path
    path = f'$.** ? (@.computed == "{key}" || @.computed starts with "{key}.")'

    def reads(field: str) -> Q:
        # The column is ours and the path a parameter.
        return Q(RawSQL(f"{field} @? %s::jsonpath", [path], output_field=BooleanField()))  # noqa: S611

    users = {
        "segments": Segment.objects.filter(reads("rule")),
        "destinations": Destination.objects.filter(reads("profile_rule")),
    }
    found = {label: [str(row) for row in rows.order_by("pk")[:20]] for label, rows in users.items()}
    return {label: names for label, names in found.items() if names}


@transaction.atomic
def computed_trait_delete(*, trait: ComputedTrait) -> str:
    """Delete a definition (refused while a rule reads it); returns its key, whose values the
    caller has removed from the profiles once the delete commits
    (``remove_defined_trait_values_task``)."""
    users = computed_trait_users(trait)
    if users:
        raise DeleteProtected(trait, {label: len(names) for label, names in users.items()})
    key = trait.key
    trait.delete()
    return key


def defined_trait_values_remove(key: str, *, batch_size: int | None = None) -> int:
    """Take a deleted definition's key out of every profile, in id-range batches (unless a
    definition with that key exists again)."""
    batch_size = batch_size or settings.CDPHUB_COMPUTED_TRAITS_BATCH
    removed = 0
    for start, end in id_ranges(batch_size):
        if ComputedTrait.objects.filter(key=key).exists():
            break
        removed += execute(
            f"UPDATE {PROFILE} SET computed_traits = computed_traits - %b::text "  # noqa: S608
            "WHERE id >= %b AND id < %b AND computed_traits ? %b",
            [key, start, end, key],
        )
    return removed


# --- the aggregate of one definition ---------------------------------------------------------


class Mode(Aggregate):
    """The most frequent value (ties: the first in sort order, so the answer is stable)."""

    function = "mode"
    template = "%(function)s() WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = JSONField()


def kind_of_events(trait: ComputedTrait) -> Q:
    """The events of the type (and name) ``trait`` reads."""
    if trait.event_name:
        return Q(type=trait.event_type, name=trait.event_name)
    return Q(type=trait.event_type)


def events_of(trait: ComputedTrait, now: dt.datetime) -> Q:
    """The condition on an event for it to count for ``trait``."""
    condition = kind_of_events(trait)
    for item in trait.where or ():
        op = item.get("op", "eq" if "value" in item else "exists")
        condition &= value_compare(
            "properties", item["property"], op, item.get("value"), has_value="value" in item
        )
    if trait.window_days:
        condition &= Q(timestamp__gte=now - dt.timedelta(days=trait.window_days))
    return condition


def trait_aggregate(trait: ComputedTrait, now: dt.datetime):
    """The aggregate (over one profile's events) giving the trait's value. Numeric kinds skip
    values that are not numbers (the aggregates ignore NULL); the others skip JSON nulls."""
    condition = events_of(trait, now)
    kind = trait.kind
    if kind == ComputedTrait.Kind.COUNT:
        return Count("id", filter=condition)
    if kind in NUMERIC_KINDS:
        number = json_number("properties", trait.property)
        if kind == ComputedTrait.Kind.AVERAGE:
            return Func(
                Avg(number, filter=condition), 2, function="round", output_field=DecimalField()
            )
        return {"sum": Sum, "min": Min, "max": Max}[kind](number, filter=condition)
    value = json_value("properties", trait.property)
    present = condition & Q(In(json_type("properties", trait.property), VALUE_TYPES))
    if kind == ComputedTrait.Kind.MOST_FREQUENT:
        return Mode(value, filter=present)
    if kind == ComputedTrait.Kind.UNIQUE:
        # DISTINCT sorts the values to find the duplicates, so they come out in sort order (an
        # ORDER BY would have to repeat the value's expression, and its path parameter).
        values = ArrayAgg(value, distinct=True, filter=present)
        return Func(
            values,
            template=f"(%(expressions)s)[1:{int(trait.unique_limit)}]",
            output_field=ArrayField(JSONField()),
        )
    order = ("timestamp", "id") if kind == ComputedTrait.Kind.FIRST else ("-timestamp", "-id")
    values = ArrayAgg(value, order_by=order, filter=present)
    return Func(values, template="(%(expressions)s)[1]", output_field=JSONField())


def values_queryset(traits: Sequence[ComputedTrait], events, now: dt.datetime):
    """Per profile among ``events``: ``v<i>`` the value of ``traits[i]``, in one pass. Only
    the events of the types (and names) the definitions read are scanned."""
    reads = reduce(operator.or_, (kind_of_events(trait) for trait in traits))
    annotations = {f"v{index}": trait_aggregate(trait, now) for index, trait in enumerate(traits)}
    return events.filter(reads).order_by().values("profile_id").annotate(**annotations)


# --- computing --------------------------------------------------------------------------------


def values_update_sql(
    traits: Sequence[ComputedTrait], scope_sql: str, scope_params: list, events, now: dt.datetime
) -> tuple[str, list]:
    """The UPDATE writing ``traits`` to the active profiles selected by ``scope_sql`` (a
    condition on ``p``), from ``events`` (the same profiles' events)."""
    values_sql, values_params = orm_sql(values_queryset(traits, events, now))
    doc, doc_params = doc_sql(traits)
    sql = f"""
        WITH scope AS MATERIALIZED (
            -- Locked in id order, as event processing locks them (no deadlock with it).
            SELECT p.id FROM {PROFILE} p WHERE p.merged_into_id IS NULL AND {scope_sql}
            ORDER BY p.id FOR NO KEY UPDATE
        ),
        trait_values AS ({values_sql}),
        docs AS (
            SELECT s.id, {doc} AS doc FROM scope s LEFT JOIN trait_values a ON a.profile_id = s.id
        )
        UPDATE {PROFILE} p SET computed_traits = (p.computed_traits - %b::text[]) || d.doc
        FROM docs d
        WHERE p.id = d.id
          AND p.computed_traits IS DISTINCT FROM (p.computed_traits - %b::text[]) || d.doc
    """  # noqa: S608 - table names are ours; keys and values are parameters
    keys = [trait.key for trait in traits]
    return sql, [*scope_params, *values_params, *doc_params, keys, keys]


def doc_sql(traits: Sequence[ComputedTrait]) -> tuple[str, list]:
    """The JSON object of the traits' values (columns ``a.v<i>``), without those that have
    none."""
    pairs = ", ".join(
        f"(%b, to_jsonb({value_column(trait, index)}))" for index, trait in enumerate(traits)
    )
    doc = f"""(SELECT COALESCE(jsonb_object_agg(k, v), '{{}}'::jsonb)
               FROM (VALUES {pairs}) AS kv(k, v) WHERE v IS NOT NULL AND v <> 'null'::jsonb)"""  # noqa: S608 - column names are ours; keys are parameters
    return doc, [trait.key for trait in traits]


def value_column(trait: ComputedTrait, index: int) -> str:
    column = f"a.v{index}"
    return f"COALESCE({column}, 0)" if trait.kind in ZERO_KINDS else column


def defined_traits(keys: Iterable[str] | None = None) -> list[ComputedTrait]:
    traits = ComputedTrait.objects.order_by("pk")
    return list(traits.filter(key__in=list(keys)) if keys is not None else traits)


def defined_traits_update(
    *,
    profile_ids: Iterable[int],
    traits: Sequence[ComputedTrait] | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Compute the defined traits (all, or ``traits``) of these profiles; how many changed."""
    ids = sorted({int(pk) for pk in profile_ids})
    traits = defined_traits() if traits is None else traits
    if not ids or not traits:
        return 0
    events = Event.objects.filter(profile_id__in=any_of(ids))
    sql, params = values_update_sql(
        traits, "p.id = ANY(%b::bigint[])", [ids], events, now or timezone.now()
    )
    return execute_without_jit(sql, params)


def id_ranges(batch_size: int) -> Iterable[tuple[int, int]]:
    ((low, high),) = query(f"SELECT min(id), max(id) FROM {PROFILE}")  # noqa: S608
    if low is None:
        return
    for start in range(low, high + 1, batch_size):
        yield start, start + batch_size


# The values of every profile, taken in one pass over the events (a batch of profiles reading
# its own events would read most of the event table each time: its rows are in time order),
# kept for the profiles whose values change.
SNAPSHOT_TABLE = "cdphub_defined_trait_values"
SNAPSHOT_SQL = f"""
    CREATE TEMP TABLE {SNAPSHOT_TABLE} AS
    SELECT v.id, v.seen, v.doc FROM (
        SELECT p.id, p.xmin AS seen, p.computed_traits AS current, {{doc}} AS doc
        FROM {PROFILE} p LEFT JOIN ({{values_sql}}) a ON a.profile_id = p.id
        WHERE p.merged_into_id IS NULL
        OFFSET 0  -- each document built once
    ) v
    WHERE v.current IS DISTINCT FROM (v.current - %b::text[]) || v.doc
"""  # noqa: S608 - table names are ours; values are parameters
# A batch writes the values of the profiles that nothing changed since the snapshot (their row
# version is the one it read); the others are computed again from their events as they are
# now. So a value computed from newer events is never overwritten with the snapshot's.
APPLY_SQL = f"""
    WITH scope AS MATERIALIZED (
        SELECT p.id, p.xmin AS current FROM {PROFILE} p
        WHERE p.id IN (SELECT id FROM {SNAPSHOT_TABLE} WHERE id >= %b AND id < %b)
        ORDER BY p.id FOR NO KEY UPDATE
    ),
    stale AS (
        SELECT s.id FROM scope s JOIN {SNAPSHOT_TABLE} t ON t.id = s.id
        WHERE s.current <> t.seen
    ),
    written AS (
        UPDATE {PROFILE} p SET computed_traits = (p.computed_traits - %b::text[]) || t.doc
        FROM scope s JOIN {SNAPSHOT_TABLE} t ON t.id = s.id AND s.current = t.seen
        WHERE p.id = s.id
        RETURNING p.id
    )
    SELECT (SELECT count(*) FROM written), array(SELECT id FROM stale ORDER BY id)
"""  # noqa: S608 - table names are ours; values are parameters


def defined_traits_recompute(
    traits: Sequence[ComputedTrait] | None = None,
    *,
    batch_size: int | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Compute the definitions for every active profile: their values in one pass over the
    events, without locks, then those that change written in id-range batches each in its own
    transaction (a long run never holds every profile locked). Returns how many changed."""
    traits = defined_traits() if traits is None else list(traits)
    if not traits:
        return 0
    now = now or timezone.now()
    batch_size = batch_size or settings.CDPHUB_COMPUTED_TRAITS_BATCH
    keys = [trait.key for trait in traits]
    values_sql, values_params = orm_sql(values_queryset(traits, Event.objects.all(), now))
    doc, doc_params = doc_sql(traits)
    changed = 0
    execute(f"DROP TABLE IF EXISTS {SNAPSHOT_TABLE}")
    try:
        execute_without_jit(
            SNAPSHOT_SQL.format(doc=doc, values_sql=values_sql),
            [*doc_params, *values_params, keys],
        )
        execute(f"CREATE INDEX ON {SNAPSHOT_TABLE} (id)")
        execute(f"ANALYZE {SNAPSHOT_TABLE}")
        ((changing,),) = query(f"SELECT count(*) FROM {SNAPSHOT_TABLE}")  # noqa: S608
        for start, end in id_ranges(batch_size) if changing else ():
            with transaction.atomic():
                ((written, stale),) = query(APPLY_SQL, [start, end, keys])
                # Changed since the snapshot: computed again from their events as they are now.
                written += defined_traits_update(profile_ids=stale, traits=traits, now=now)
            changed += written
    finally:
        execute(f"DROP TABLE IF EXISTS {SNAPSHOT_TABLE}")
    return changed


def defined_trait_recompute(trait: ComputedTrait) -> ComputedTrait:
    """Compute one definition for every profile, recording its status (a failure keeps its
    error on the definition, and the values computed before it)."""
    started = timezone.now()
    ComputedTrait.objects.filter(pk=trait.pk).update(
        status=ComputedTrait.Status.CALCULATING, last_error=""
    )
    try:
        defined_traits_recompute([trait], now=started)
    except Exception as exc:
        logger.exception("computing the trait %s failed", trait.key)
        ComputedTrait.objects.filter(pk=trait.pk).update(
            status=ComputedTrait.Status.FAILED, last_error=str(exc)[:2000]
        )
    else:
        ComputedTrait.objects.filter(pk=trait.pk).update(
            status=ComputedTrait.Status.READY, computed_at=started, windows_checked_at=started
        )
    trait.refresh_from_db()
    return trait


def defined_windows_expire(*, now: dt.datetime | None = None) -> int:
    """Compute again the windowed traits of the profiles with events that left a window since
    the last check; returns how many profiles changed. A definition not yet computed for
    everyone is skipped (its full computation comes first)."""
    now = now or timezone.now()
    changed = 0
    windowed = ComputedTrait.objects.filter(
        window_days__isnull=False, windows_checked_at__isnull=False
    )
    for trait in windowed.order_by("pk"):
        window = dt.timedelta(days=trait.window_days)
        left = Event.objects.filter(
            kind_of_events(trait),
            timestamp__gte=trait.windows_checked_at - window,
            timestamp__lt=now - window,
        )
        ids = set(left.values_list("profile_id", flat=True).distinct())
        for start in range(0, len(ids), settings.CDPHUB_COMPUTED_TRAITS_BATCH):
            chunk = sorted(ids)[start : start + settings.CDPHUB_COMPUTED_TRAITS_BATCH]
            with transaction.atomic():
                changed += defined_traits_update(profile_ids=chunk, traits=[trait], now=now)
        ComputedTrait.objects.filter(pk=trait.pk).update(windows_checked_at=now)
    return changed


# --- preview ----------------------------------------------------------------------------------


def defined_trait_preview(
    trait: ComputedTrait,
    *,
    pii: bool,
    sample_size: int = PREVIEW_SAMPLE,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The definition computed (not saved) for a sample of the profiles that recently had
    events it reads: how many have a value, the distribution (numbers: min, quartiles, max;
    other values: the most common) and a few examples. Without ``pii`` (the viewer may not
    see personal data) values are masked by the property's name and by what they look like."""
    now = now or timezone.now()
    ids: list[int] = []
    # Recent events only: bounded by time, the event table's time index (BRIN) keeps this a read
    # of its last blocks, not a sort of every event of the type (a definition without a name).
    for days in PREVIEW_DAYS:
        reads = Event.objects.filter(
            kind_of_events(trait), timestamp__gte=now - dt.timedelta(days=days)
        )
        recent = reads.order_by("-timestamp").values_list("profile_id", flat=True)
        ids = list(dict.fromkeys(recent[: sample_size * 5]))[:sample_size]
        if len(ids) == sample_size:
            break
    if not ids:
        return {"sampled": 0, "with_value": 0, "numbers": None, "top": [], "examples": []}
    rows = values_queryset([trait], Event.objects.filter(profile_id__in=any_of(ids)), now)
    values = {row["profile_id"]: row["v0"] for row in rows}
    if trait.kind in ZERO_KINDS:
        values = {pk: values.get(pk) or 0 for pk in ids}
    present = {pk: value for pk, value in values.items() if value not in (None, [])}
    if not pii:
        key = trait.property or trait.key
        present = {pk: mask_trait(key, value) for pk, value in present.items()}
    return {
        "sampled": len(ids),
        "with_value": len(present),
        "numbers": numbers_summary(present.values()),
        "top": top_values(trait, present.values()),
        "examples": sorted(present.items())[:10],
    }


def numbers_summary(values: Iterable[Any]) -> dict[str, Decimal] | None:
    numbers = sorted(
        Decimal(str(v)) for v in values if isinstance(v, int | float | Decimal) and v is not True
    )
    if not numbers:
        return None

    def at(fraction: float) -> Decimal:
        return numbers[min(len(numbers) - 1, int(fraction * len(numbers)))]

    return {
        "min": numbers[0],
        "p25": at(0.25),
        "median": at(0.5),
        "p75": at(0.75),
        "max": numbers[-1],
    }


def top_values(trait: ComputedTrait, values: Iterable[Any]) -> list[tuple[str, int]]:
    """The most common values (for unique lists: the most common elements)."""
    counter: Counter = Counter()
    for value in values:
        for item in value if trait.kind == ComputedTrait.Kind.UNIQUE else [value]:
            counter[orjson_text(item)] += 1
    return counter.most_common(PREVIEW_TOP)


def orjson_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
