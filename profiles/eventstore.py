"""How events are stored: time partitions, and the window of message ids that de-duplicates.

**Partitions.** The event table is partitioned by range of ``timestamp`` (PostgreSQL's own
declarative partitioning): one partition per interval (a month by default,
``CDPHUB_EVENT_PARTITION_INTERVAL``), plus a default partition that takes whatever no partition
covers, so that no timestamp ever fails a batch. Partitions are made ahead of time by a scheduled
task (``event_partitions_maintain``) and by processing when a batch holds a timestamp no
partition covers (``event_partitions_ensure_for``), within CREATE_PAST and CREATE_AHEAD of now:
beyond, events stay in the default partition (a phone whose clock says 1970 must not create a
partition). Retention detaches whole partitions, then drops them (``events_purge_before``).

A new partition is made as a plain table and then attached: ATTACH PARTITION needs only a SHARE
UPDATE EXCLUSIVE lock on the event table, so reads and writes go on meanwhile, where CREATE TABLE
... PARTITION OF would take an ACCESS EXCLUSIVE one and queue every reader behind it.

An installation whose events predate partitioning keeps a plain table until ``manage.py
partition_events`` converts it; everything here works on both layouts (on a plain table there is
nothing to make, and retention deletes rows).

**De-duplication.** A message id is stored in SeenMessage when its event is, and kept for
CDPHUB_EVENT_DEDUP_DAYS: a message sent again within that window is never stored twice, whatever
partition its timestamp falls in, and the event table needs no unique index across partitions.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from cdphub.sql import execute, query
from profiles.models import Event, SeenMessage, Source

EVENT_TABLE = Event._meta.db_table
DEFAULT_PARTITION = f"{EVENT_TABLE}_default"
SEEN_TABLE = SeenMessage._meta.db_table
CREATE_PAST = timedelta(days=731)
CREATE_AHEAD = timedelta(days=62)
# How many intervals ahead of now the scheduled task keeps made.
MADE_AHEAD = 2
# One key for every change of the partitions: two processes never make the same one.
PARTITIONS_LOCK = 0x65766E74  # "evnt"
# A partition to drop waits this long for the readers of the event table, then gives up until
# the next run rather than queueing every new reader behind it.
DROP_LOCK_TIMEOUT = "5s"
# A partition detached by retention, waiting to be dropped, is renamed with this ending.
RETIRED_SUFFIX = "_retired"
BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


# --- Intervals ------------------------------------------------------------------------------


def interval_start(moment: datetime) -> datetime:
    """The start (UTC) of the partition interval that holds ``moment``."""
    interval = settings.CDPHUB_EVENT_PARTITION_INTERVAL
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def interval_end(start: datetime) -> datetime:
    interval = settings.CDPHUB_EVENT_PARTITION_INTERVAL
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def partition_name(start: datetime) -> str:
    return f"{EVENT_TABLE}_p{start:%Y%m%d}"


# --- Reading the layout ---------------------------------------------------------------------


def event_table_partitioned(table: str = EVENT_TABLE) -> bool:
    return bool(
        query(
            "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%b::text)",
            [table],
        )
    )


def event_partitions(table: str = EVENT_TABLE) -> list[Partition]:
    """The range partitions of ``table`` in time order (the default partition is not one)."""
    rows = query(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%b::text)",
        [table],
    )
    partitions = []
    for name, bound in rows:
        found = BOUNDS.search(bound)
        if found:
            start, end = (datetime.fromisoformat(value) for value in found.groups())
            partitions.append(Partition(name, start, end))
    return sorted(partitions, key=lambda partition: partition.start)


# --- Making partitions ----------------------------------------------------------------------


def event_partitions_ensure(
    start: datetime, end: datetime, *, table: str = EVENT_TABLE
) -> list[str]:
    """Make the partitions that cover ``[start, end)`` where none does, moving the rows the
    default partition holds for them; the names made. In the caller's transaction (processing
    makes a partition in the transaction of the batch that needs it) or one of its own.
    ``table``: the event table, or its partitioned copy while a plain one is converted."""
    with transaction.atomic():
        query("SELECT pg_advisory_xact_lock(%b::bigint)", [PARTITIONS_LOCK])
        if not event_table_partitioned(table):
            return []
        partitions = event_partitions(table)
        made = []
        moment = interval_start(start)
        while moment < end:
            following = interval_end(moment)
            for gap_start, gap_end in _gaps(partitions, moment, following):
                partitions.append(_partition_make(table, gap_start, gap_end))
                made.append(partitions[-1].name)
            moment = following
        return made


def _gaps(partitions: list[Partition], start: datetime, end: datetime) -> list[tuple]:
    """The parts of ``[start, end)`` no partition covers (partitions made with another interval
    setting may cover some of it)."""
    gaps = [(start, end)]
    for partition in partitions:
        remaining = []
        for gap_start, gap_end in gaps:
            if partition.end <= gap_start or partition.start >= gap_end:
                remaining.append((gap_start, gap_end))
                continue
            if gap_start < partition.start:
                remaining.append((gap_start, partition.start))
            if partition.end < gap_end:
                remaining.append((partition.end, gap_end))
        gaps = remaining
    return gaps


def _partition_make(table: str, start: datetime, end: datetime) -> Partition:
    name = partition_name(start)
    # Nothing may reach the default partition for this range between the move and the attach
    # (ATTACH checks that it holds none): writers of far-off timestamps wait that long.
    execute(f'LOCK TABLE "{DEFAULT_PARTITION}" IN SHARE ROW EXCLUSIVE MODE')
    execute(f'CREATE TABLE "{name}" (LIKE "{table}")')
    execute(
        f'WITH moved AS (DELETE FROM "{DEFAULT_PARTITION}" '  # noqa: S608 - names made here
        "WHERE timestamp >= %b AND timestamp < %b RETURNING *) "
        f'INSERT INTO "{name}" SELECT * FROM moved',
        [start, end],
    )
    execute(
        f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" '
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )
    return Partition(name, start, end)


class _Covered:
    """What this process knows of the partitions, so that a batch whose timestamps are all
    covered (nearly every batch) costs processing no query."""

    # A plain event table (before ``partition_events``) is looked at again this often.
    PLAIN_RECHECK_SECONDS = 60

    def __init__(self):
        self.partitions: list[Partition] = []
        self.outside: set[datetime] = set()  # intervals left to the default partition
        self.plain_until = float("-inf")

    def missing(self, starts: set[datetime]) -> set[datetime]:
        if time.monotonic() < self.plain_until:
            return set()
        return {
            start
            for start in starts - self.outside
            if not any(partition.covers(start) for partition in self.partitions)
        }

    def reload(self) -> None:
        self.partitions = event_partitions()
        if not self.partitions and not event_table_partitioned():
            self.plain_until = time.monotonic() + self.PLAIN_RECHECK_SECONDS


_covered = _Covered()


def event_partitions_ensure_for(timestamps: list[datetime]) -> None:
    """Processing's check before it stores a batch: make the partitions its timestamps need,
    within CREATE_PAST and CREATE_AHEAD of now (the rest goes to the default partition)."""
    if not timestamps:
        return
    # A batch nearly always falls within one interval: then its first and last moments say
    # so, without finding the interval of every timestamp (4% of processing's time).
    first, last = interval_start(min(timestamps)), interval_start(max(timestamps))
    starts = {first} if first == last else {interval_start(moment) for moment in timestamps}
    if not _covered.missing(starts):
        return
    _covered.reload()
    missing = _covered.missing(starts)
    now = timezone.now()
    for start in sorted(missing):
        if now - CREATE_PAST <= start <= now + CREATE_AHEAD:
            event_partitions_ensure(start, interval_end(start))
        else:
            _covered.outside.add(start)
    if missing:
        _covered.reload()


def event_partitions_maintain(*, now: datetime | None = None) -> list[str]:
    """The scheduled task's work: partitions for the current interval and MADE_AHEAD more, and
    for the rows of the default partition that now fall within CREATE_PAST and CREATE_AHEAD
    (events that came before their partition was made); the names made."""
    now = now or timezone.now()
    end = now
    for _ in range(MADE_AHEAD + 1):
        end = interval_end(interval_start(end))
    made = event_partitions_ensure(interval_start(now), end)
    if not event_table_partitioned():
        return made
    stray = query(
        f"SELECT DISTINCT date_trunc(%b, timestamp, 'UTC') FROM \"{DEFAULT_PARTITION}\" "  # noqa: S608 - names made here
        "WHERE timestamp >= %b AND timestamp < %b",
        ["day", now - CREATE_PAST, now + CREATE_AHEAD],
    )
    for (day,) in sorted(stray):
        made += event_partitions_ensure(day, day + timedelta(microseconds=1))
    return made


# --- Retention ------------------------------------------------------------------------------


def events_purge_before(cutoff: datetime, batch_size: int) -> int:
    """Retention of events: drop the partitions whose every event is older than ``cutoff``,
    and delete the older rows of the default partition (or, on a plain table, the older rows);
    how many events went (a dropped partition's count is the planner's estimate when it has
    one: counting would read what dropping does not). The partition that holds the cutoff waits
    until it is wholly past it: events are kept at most one interval longer than the period."""
    if not event_table_partitioned():
        return _delete_in_batches(EVENT_TABLE, "timestamp < %b", [cutoff], batch_size)
    removed = 0
    for partition in event_partitions():
        if partition.end <= cutoff:
            removed += partition_detach(partition.name)
    retired_partitions_drop()
    return removed + _delete_in_batches(DEFAULT_PARTITION, "timestamp < %b", [cutoff], batch_size)


def partition_detach(name: str) -> int:
    """Take a partition out of the event table and rename it retired; how many events it held.
    Dropping it there would lock the event table, against every reader and writer, for as long
    as removing its files takes (about 50 ms for 750,000 events, growing with them); detaching
    is a change of the catalog only (about a millisecond), and the files go with
    ``retired_partitions_drop``, which locks nothing the hub uses."""
    with transaction.atomic():
        query("SELECT pg_advisory_xact_lock(%b::bigint)", [PARTITIONS_LOCK])
        ((estimate,),) = query(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%b::text)", [name]
        )
        if estimate < 0:  # never analysed
            ((estimate,),) = query(f'SELECT count(*) FROM "{name}"')  # noqa: S608 - a partition's name from the catalog
        query("SELECT set_config('lock_timeout', %b, true)", [DROP_LOCK_TIMEOUT])
        execute(f'ALTER TABLE "{EVENT_TABLE}" DETACH PARTITION "{name}"')
        execute(f'ALTER TABLE "{name}" RENAME TO "{name}{RETIRED_SUFFIX}"')
    return estimate


def retired_partitions_drop() -> list[str]:
    """Drop the partitions retention detached (``partition_detach``): those of this run, and
    any that an interrupted run left behind. Their events are out of the event table already;
    until this runs they are still on disk."""
    retired = [
        name
        for (name,) in query(
            "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
            "AND starts_with(relname, %b) AND right(relname, %b) = %b",
            [f"{EVENT_TABLE}_p", len(RETIRED_SUFFIX), RETIRED_SUFFIX],
        )
    ]
    for name in retired:
        with transaction.atomic():
            execute(f'DROP TABLE IF EXISTS "{name}"')
    return retired


def _delete_in_batches(table: str, condition: str, params: list, batch_size: int) -> int:
    """Delete the rows of one table (not a partitioned one: row addresses are per table) that
    match ``condition``, a batch per transaction, so locks stay short."""
    total = 0
    while True:
        with transaction.atomic():
            removed = execute(
                f'DELETE FROM "{table}" WHERE ctid = ANY(ARRAY('  # noqa: S608 - names from model metadata; values are parameters
                f'SELECT ctid FROM "{table}" WHERE {condition} LIMIT %b))',
                [*params, batch_size],
            )
        total += removed
        if removed < batch_size:
            return total


# --- Converting a plain event table ---------------------------------------------------------

COPY_TABLE = f"{EVENT_TABLE}_partitioned"
MIRROR_FUNCTION = f"{EVENT_TABLE}_mirror"
# The swap waits this long for the event table's readers and writers, then tries again.
SWAP_LOCK_TIMEOUT = "3s"
SWAP_ATTEMPTS = 20


def events_partition(*, batch_size: int = 50_000, progress=None) -> int:
    """Convert a plain event table into the partitioned layout while collection goes on; how
    many events it copied. Resumable: run again after an interruption, it goes on.

    1. A partitioned copy of the table (same columns and indexes; the primary key becomes
       (id, timestamp), as partitioning requires) with partitions for the events' time span.
    2. Triggers on the plain table repeat every insert, update and delete on the copy.
    3. Events are copied in batches of ids, each row locked FOR SHARE while copied, so an
       update or delete of it waits and then reaches the copy through its trigger.
    4. One short transaction swaps the tables (the copy takes the table's name, indexes and id
       sequence) and drops the plain one.

    ``progress(copied, total)`` is called after each batch."""
    if event_table_partitioned():
        return 0
    if not event_table_partitioned(COPY_TABLE):
        _copy_table_create()
    _mirror_install()
    copied = _rows_copy(batch_size, progress)
    _tables_swap()
    return copied


def _copy_table_create() -> None:
    with transaction.atomic():
        execute(f'DROP TABLE IF EXISTS "{COPY_TABLE}"')
        execute(
            f'CREATE TABLE "{COPY_TABLE}" (LIKE "{EVENT_TABLE}" INCLUDING DEFAULTS '
            "INCLUDING IDENTITY) PARTITION BY RANGE (timestamp)"
        )
        execute(f'ALTER TABLE "{COPY_TABLE}" ADD PRIMARY KEY (id, timestamp)')
        for name, definition in _secondary_indexes(EVENT_TABLE):
            method_and_columns = definition.split(" USING ", 1)[1]
            execute(f'CREATE INDEX "{name}_new" ON "{COPY_TABLE}" USING {method_and_columns}')
        execute(f'CREATE TABLE "{DEFAULT_PARTITION}" PARTITION OF "{COPY_TABLE}" DEFAULT')
    span = query(f'SELECT min(timestamp), max(timestamp) FROM "{EVENT_TABLE}"')  # noqa: S608 - names from model metadata
    now = timezone.now()
    first, last = span[0] if span and span[0][0] else (now, now)
    start = max(first, now - CREATE_PAST)
    end = min(max(last, now), now + CREATE_AHEAD)
    for _ in range(MADE_AHEAD + 1):
        end = interval_end(interval_start(end))
    event_partitions_ensure(min(start, end), end, table=COPY_TABLE)


def _secondary_indexes(table: str) -> list[tuple[str, str]]:
    """The indexes of ``table`` other than its primary key and unique ones."""
    return query(
        "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = to_regclass(%b::text) AND NOT x.indisunique ORDER BY 1",
        [table],
    )


def _mirror_install() -> None:
    with transaction.atomic():
        execute(
            f"""
            CREATE OR REPLACE FUNCTION "{MIRROR_FUNCTION}"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('UPDATE', 'DELETE') THEN
                    DELETE FROM "{COPY_TABLE}"
                    WHERE id = OLD.id AND timestamp = OLD.timestamp;
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN
                    INSERT INTO "{COPY_TABLE}" SELECT (NEW).* ON CONFLICT DO NOTHING;
                END IF;
                RETURN NULL;
            END $$
            """  # noqa: S608 - names from model metadata
        )
        execute(f'DROP TRIGGER IF EXISTS "{MIRROR_FUNCTION}" ON "{EVENT_TABLE}"')
        # Taking the trigger's lock waits for the writers already at work: every row written
        # after it is mirrored, every row written before it is there for the copy to read.
        execute(
            f'CREATE TRIGGER "{MIRROR_FUNCTION}" AFTER INSERT OR UPDATE OR DELETE '
            f'ON "{EVENT_TABLE}" FOR EACH ROW EXECUTE FUNCTION "{MIRROR_FUNCTION}"()'
        )


def _rows_copy(batch_size: int, progress) -> int:
    ((total,),) = query(f'SELECT count(*) FROM "{EVENT_TABLE}"')  # noqa: S608 - names from model metadata
    copied = after = 0
    while True:
        upper = query(
            f'SELECT id FROM "{EVENT_TABLE}" WHERE id > %b ORDER BY id OFFSET %b LIMIT 1',  # noqa: S608 - names from model metadata
            [after, batch_size - 1],
        )
        upto = upper[0][0] if upper else None
        with transaction.atomic():
            copied += execute(
                f'INSERT INTO "{COPY_TABLE}" SELECT * FROM "{EVENT_TABLE}" '  # noqa: S608 - names from model metadata
                "WHERE id > %b AND (%b::bigint IS NULL OR id <= %b) FOR SHARE "
                "ON CONFLICT DO NOTHING",
                [after, upto, upto],
            )
        if progress:
            progress(copied, total)
        if upto is None:
            return copied
        after = upto


def _tables_swap() -> None:
    for attempt in range(SWAP_ATTEMPTS):
        try:
            with transaction.atomic():
                query("SELECT set_config('lock_timeout', %b, true)", [SWAP_LOCK_TIMEOUT])
                execute(f'LOCK TABLE "{EVENT_TABLE}" IN ACCESS EXCLUSIVE MODE')
                _tables_swap_locked()
                return
        except OperationalError:
            if attempt == SWAP_ATTEMPTS - 1:
                raise
            time.sleep(1)


def _tables_swap_locked() -> None:
    sequence, next_id = _next_id()
    indexes = [name for name, _ in _secondary_indexes(EVENT_TABLE)]
    execute(f'DROP TABLE "{EVENT_TABLE}"')
    execute(f'DROP FUNCTION "{MIRROR_FUNCTION}"()')
    _table_take_over(COPY_TABLE, sequence, next_id)
    execute(
        f'ALTER TABLE "{EVENT_TABLE}" RENAME CONSTRAINT "{COPY_TABLE}_pkey" TO "{EVENT_TABLE}_pkey"'
    )
    for name in indexes:
        execute(f'ALTER INDEX "{name}_new" RENAME TO "{name}"')


def _next_id() -> tuple[str, int]:
    """The event table's id sequence, and the id it gives next."""
    ((sequence,),) = query("SELECT pg_get_serial_sequence(%b, 'id')", [EVENT_TABLE])
    ((next_id,),) = query(
        f"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {sequence}"  # noqa: S608 - a name from the catalog
    )
    return sequence, next_id


def _table_take_over(table: str, sequence: str, next_id: int) -> None:
    """``table`` becomes the event table, its id sequence going on from ``next_id``."""
    execute(f'ALTER TABLE "{table}" RENAME TO "{EVENT_TABLE}"')
    ((own_sequence,),) = query("SELECT pg_get_serial_sequence(%b, 'id')", [EVENT_TABLE])
    execute(f"ALTER SEQUENCE {own_sequence} RENAME TO {sequence.split('.')[-1]}")
    execute(f'ALTER TABLE "{EVENT_TABLE}" ALTER id RESTART WITH {int(next_id)}')


def events_unpartition() -> None:
    """Back to a plain table (the reverse of migration 0022), all at once: for going back in
    development, not for a production table."""
    if not event_table_partitioned():
        return
    plain = f"{EVENT_TABLE}_plain"
    with transaction.atomic():
        sequence, next_id = _next_id()
        indexes = _secondary_indexes(EVENT_TABLE)
        execute(
            f'CREATE TABLE "{plain}" (LIKE "{EVENT_TABLE}" INCLUDING DEFAULTS INCLUDING IDENTITY)'
        )
        execute(f'INSERT INTO "{plain}" SELECT * FROM "{EVENT_TABLE}"')  # noqa: S608 - names from model metadata
        execute(f'DROP TABLE "{EVENT_TABLE}"')
        _table_take_over(plain, sequence, next_id)
        execute(f'ALTER TABLE "{EVENT_TABLE}" ADD CONSTRAINT "{EVENT_TABLE}_pkey" PRIMARY KEY (id)')
        for name, definition in indexes:
            method_and_columns = definition.split(" USING ", 1)[1]
            execute(f'CREATE INDEX "{name}" ON "{EVENT_TABLE}" USING {method_and_columns}')


# --- De-duplication window ------------------------------------------------------------------


def event_message_condition(message_id: str) -> Q:
    """The events of this message id, for a look-up (the admin's search): found through the
    de-duplication window's record of it, in the partition of the event's time, since the
    event table has no index on message ids. Only within the window."""
    seen = SeenMessage.objects.filter(
        source_id__in=Source.objects.values("pk"), message_id=message_id
    ).values_list("source_id", "timestamp")
    condition = Q(pk__in=[])
    for source_id, moment in seen:
        condition |= Q(source_id=source_id, message_id=message_id, timestamp=moment)
    return condition


def seen_messages_expire(*, now: datetime | None = None, batch_size: int = 10_000) -> int:
    """Forget the message ids stored longer ago than the de-duplication window; how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.CDPHUB_EVENT_DEDUP_DAYS)
    return _delete_in_batches(SEEN_TABLE, "seen_at < %b", [cutoff], batch_size)
