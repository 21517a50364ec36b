"""What processing observed in the data: event names, their properties and the traits, with the
JSON types of their values and a few example values (``ObservedField``). The rule builder offers
these to pick from, so a marketer picks what exists, and nothing scans the events to find out.

Cheap on the event path: a batch is summed up in memory, and only what this process has not
recorded lately (a new field, a new type, a missing example, a last-seen time older than
``RECORD_EVERY``) is written, after the batch commits, in one statement. Example values are never
personal: none for personal keys (e-mail, name, address, ...), none that look like an e-mail or
a phone number, and only short scalars.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

import orjson
from django.db import transaction

from cdphub.pii import is_pii_key, looks_personal, mask_text
from cdphub.sql import execute
from profiles.ingest.plans import json_type
from profiles.models import ObservedField

logger = logging.getLogger(__name__)

RECORD_EVERY = 600.0  # seconds: how stale a field's last-seen time may get
MAX_EXAMPLES = 5
MAX_LOOKED = 50  # values of one field looked at as examples, per batch
MAX_EXAMPLE_LENGTH = 60
MAX_KEY_LENGTH = 100
MAX_DEPTH = 2  # properties and traits down to "address.city"
# A hostile or broken sender inventing keys by the thousand stops adding fields here; fields
# already known keep being updated.
MAX_FIELDS = 50_000
EVENT_TYPES = ("track", "page", "screen")

FieldKey = tuple[str, str, str]  # (kind, event, key)


@dataclass
class Seen:
    types: set[str] = field(default_factory=set)
    examples: list = field(default_factory=list)
    # Values looked at as examples in this batch: checking one costs a few pattern matches,
    # so a field stops looking once it has enough, or has looked at enough.
    looked: int = 0

    def add(self, key: str, value: object) -> None:
        self.types.add(json_type(value))
        if not self.looked_enough:
            self.looked += 1
            kept = example(key, value)
            if kept is not None and kept not in self.examples:
                self.examples.append(kept)

    @property
    def looked_enough(self) -> bool:
        """Whether more values can add nothing but a type."""
        return len(self.examples) >= MAX_EXAMPLES or self.looked >= MAX_LOOKED


def observed_fields_record(messages: Iterable) -> None:
    """Sum up the processed ``messages`` and write what is new once the batch commits (a
    failure there is logged, never the batch's)."""
    seen = observed_in(messages)
    changed = {key: value for key, value in seen.items() if _recorded.is_new(key, value)}
    if changed:
        transaction.on_commit(partial(observed_fields_write, changed), robust=True)


def observed_in(messages: Iterable) -> dict[FieldKey, Seen]:
    seen: dict[FieldKey, Seen] = {}
    # A batch repeats a few shapes of properties thousands of times. Once every field of a
    # shape has looked at enough examples, another message of that shape can add nothing, and
    # is not walked (walking every message took about a seventh of processing's time).
    done: set[tuple] = set()

    def walk(kind: str, name: str, document: dict) -> None:
        shape = shape_of(document)
        if shape is not None and (kind, name, shape) in done:
            return
        enough = True
        for key, value in flattened(document):
            field = seen.setdefault((kind, name, key), Seen())
            field.add(key, value)
            enough = enough and field.looked_enough
        if shape is not None and enough:
            done.add((kind, name, shape))

    for message in messages:
        payload = message.payload
        if message.type in EVENT_TYPES:
            properties = payload.get("properties")
            properties = properties if isinstance(properties, dict) else {}
            name = event_name(message.type, payload, properties)
            if not name:
                continue
            seen.setdefault(("event", name, ""), Seen()).types.add(message.type)
            walk("property", name, properties)
        elif message.type == "identify":
            traits = payload.get("traits")
            if not isinstance(traits, dict):
                context = payload.get("context")
                traits = context.get("traits") if isinstance(context, dict) else None
            walk("trait", "", traits if isinstance(traits, dict) else {})
    return seen


def shape_of(document: dict) -> tuple | None:
    """The keys of ``document`` and what decides the JSON types of their values, or None for
    a document with nested objects (whose keys the shape does not hold)."""
    types = tuple(map(type, document.values()))
    if dict in types:
        return None
    if float in types:  # 2.0 is an integer to JSON Schema, 2.5 a number
        wholes = tuple(v.is_integer() for v in document.values() if type(v) is float)
        return tuple(document), types, wholes
    return tuple(document), types


@dataclass
class StoredEvent:
    """An event as stored, read as the message it came from (for ``observed_in``)."""

    type: str
    payload: dict


def observed_in_events(events: Iterable[tuple[str, str, dict]]) -> dict[FieldKey, Seen]:
    """``observed_in`` for events written without processing (type, name, properties), as
    the demo data is: an identify event's properties are its traits."""
    messages = []
    for kind, name, properties in events:
        if kind == "identify":
            payload = {"traits": properties}
        else:
            payload = {"event" if kind == "track" else "name": name, "properties": properties}
        messages.append(StoredEvent(kind, payload))
    return observed_in(messages)


def event_name(kind: str, payload: dict, properties: dict) -> str:
    """The stored event's name, as processing names it (``profiles.resolution.batch``)."""
    name = (
        payload.get("event") if kind == "track" else payload.get("name") or properties.get("name")
    )
    return name[:255] if isinstance(name, str) else ""


def flattened(document: dict, prefix: str = "", depth: int = 1):
    """(dotted path, value) of every key down to ``MAX_DEPTH`` levels; a nested object is a
    field too (its type is "object")."""
    for key, value in document.items():
        if not isinstance(key, str) or not key or "." in key or len(key) > MAX_KEY_LENGTH:
            continue
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, dict) and depth < MAX_DEPTH:
            yield from flattened(value, f"{path}.", depth + 1)


def example(key: str, value: object):
    """``value`` as an example of ``key``, or None when it is personal or not a short scalar."""
    if isinstance(value, int | float):  # booleans too
        return None if is_pii_key(key.rsplit(".", 1)[-1]) else value
    if not isinstance(value, str) or not value or len(value) > MAX_EXAMPLE_LENGTH:
        return None
    if is_pii_key(key.rsplit(".", 1)[-1]) or looks_personal(value) or mask_text(value) != value:
        return None
    return value


class Recorded:
    """What this process wrote lately, so that a batch of known fields writes nothing."""

    def __init__(self) -> None:
        self.fields: dict[FieldKey, tuple[frozenset, tuple, float]] = {}

    def is_new(self, key: FieldKey, seen: Seen) -> bool:
        known = self.fields.get(key)
        if known is None or time.monotonic() - known[2] > RECORD_EVERY:
            return True
        types, examples, _ = known
        if not seen.types <= types:
            return True
        return len(examples) < MAX_EXAMPLES and bool(set(map(repr, seen.examples)) - set(examples))

    def remember(self, key: FieldKey, seen: Seen) -> None:
        known = self.fields.get(key)
        types = frozenset(seen.types) | (known[0] if known else frozenset())
        examples = tuple(dict.fromkeys([*(known[1] if known else ()), *map(repr, seen.examples)]))
        self.fields[key] = (types, examples[:MAX_EXAMPLES], time.monotonic())

    def clear(self) -> None:
        self.fields.clear()


_recorded = Recorded()


def observed_fields_forget() -> None:
    """Forget what this process recorded: the next batch writes its fields again (for a
    table emptied meanwhile, as between tests)."""
    _recorded.clear()


WRITE_SQL = f"""
    WITH seen AS (
        SELECT r.*, EXISTS (
            SELECT 1 FROM {ObservedField._meta.db_table} f
            WHERE (f.kind, f.event, f.key) = (r.kind, r.event, r.key)) AS known
        FROM jsonb_to_recordset(%b::jsonb)
            AS r(kind text, event text, key text, types text[], examples jsonb)
    ), numbered AS (
        SELECT seen.*, row_number() OVER (PARTITION BY known ORDER BY kind, event, key) AS n
        FROM seen
    )
    INSERT INTO {ObservedField._meta.db_table} AS o
        (kind, event, key, types, examples, first_seen_at, last_seen_at)
    SELECT kind, event, key, types, examples, now(), now()
    FROM numbered
    WHERE known OR n <= %b - (SELECT count(*) FROM {ObservedField._meta.db_table})
    -- One order for every writer: concurrent batches lock the same fields in the same order.
    ORDER BY kind, event, key
    ON CONFLICT (kind, event, key) DO UPDATE SET
        types = ARRAY(SELECT DISTINCT t FROM unnest(o.types || EXCLUDED.types) AS t ORDER BY t),
        examples = (
            SELECT coalesce(jsonb_agg(e ORDER BY first), '[]'::jsonb) FROM (
                SELECT e, min(n) AS first
                FROM jsonb_array_elements(o.examples || EXCLUDED.examples)
                    WITH ORDINALITY AS x(e, n)
                GROUP BY e ORDER BY first LIMIT {MAX_EXAMPLES}
            ) kept),
        last_seen_at = now()
"""  # noqa: S608 - the table name from model metadata; values are parameters


def observed_fields_write(seen: dict[FieldKey, Seen]) -> None:
    rows = [
        {
            "kind": kind,
            "event": event,
            "key": key,
            "types": sorted(item.types),
            "examples": item.examples,
        }
        for (kind, event, key), item in sorted(seen.items())
    ]
    execute(WRITE_SQL, [orjson.dumps(rows).decode(), MAX_FIELDS])
    for key, item in seen.items():
        _recorded.remember(key, item)
