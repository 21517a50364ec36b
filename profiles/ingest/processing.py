"""Bulk processing of collected messages: claim staged rows, resolve identities, insert events,
apply traits, delete the staged rows, all in one transaction per batch.

Concurrency: rows are claimed with ``FOR UPDATE SKIP LOCKED``, so workers never share a row,
lane by lane (a lane per sender), so they seldom share a person either; a
transaction-level advisory lock per normalised identifier makes sure two workers never resolve
the same person at once (so one new person gets one profile): a message whose identifiers
another worker holds is left for later, never waited on. The profiles a batch touches are
row-locked in id order before anything changes, which serialises it with merges. A crash rolls
the whole batch back: its rows stay staged and are claimed again; nothing is doubled."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from cdphub.logs import request_id_set
from cdphub.metrics import PROCESSED
from cdphub.sql import (
    atomic_retried_on_deadlock,
    keyed_lookups_only,
    query,
    query_in_index_order,
)
from profiles.ingest import hooks, plans
from profiles.ingest.observed import observed_fields_record
from profiles.ingest.refresh import profiles_refresh_queue, queued_profiles_refresh
from profiles.models import PendingMessage, RejectedMessage
from profiles.resolution.batch import (
    BatchResolver,
    Staged,
    as_json,
)
from profiles.resolution.identifiers import identifier_lock_key, known_user_ids, message_identifiers
from profiles.resolution.normalize import InvalidIdentifier, normalize_identifier

logger = logging.getLogger(__name__)

DEFERRED_PAUSE_SECONDS = 0.05
PENDING_TABLE = PendingMessage._meta.db_table

# The payload comes back as text, parsed in Python (orjson): picking out the few paths that
# resolution, traits and the hooks read, in SQL, cost the database more than sending it all. The
# event rows themselves are built by PostgreSQL from the staged JSON (batch_resolution.EVENTS_SQL).
# Claimed lane by lane (PendingMessage.lane), in arrival order within a lane, after a position
# (lane, id): a worker's batch is a run of lanes, and another worker's the next run.
CLAIM_SQL = f"""
    SELECT id, source_id, message_id, type, payload::text, timestamp, received_at, lane
    FROM {PENDING_TABLE}
    WHERE (lane, id) > (%b, %b)
    ORDER BY lane, id
    LIMIT %b
    FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - table names from model metadata; values are parameters
CLAIM_IDS_SQL = f"""
    SELECT id, source_id, message_id, type, payload::text, timestamp, received_at, lane
    FROM {PENDING_TABLE}
    WHERE id = ANY(%b::bigint[])
    ORDER BY lane, id
    FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - table names from model metadata; values are parameters
STAGED_IDS_SQL = f"""
    SELECT id, lane FROM {PENDING_TABLE}
    WHERE (lane, id) > (%b, %b)
    ORDER BY lane, id
    LIMIT %b
"""  # noqa: S608 - table names from model metadata; values are parameters
# Before the first staged message: lanes start at 0.
START: tuple[int, int] = (-1, 0)
REJECT_READ_SQL = f"""
    SELECT source_id, message_id, type, payload::text, received_at
    FROM {PENDING_TABLE} WHERE id = %b FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - table names from model metadata; values are parameters
# Errors that say nothing about the messages: the batch stays staged and is claimed again.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
DEADLOCK_RETRIES = 3


def pending_process(*, batch_size: int | None = None, max_batches: int | None = None) -> int:
    """Process staged messages batch by batch until none wait; returns how many were processed.
    The profiles they touched are refreshed (computed traits, segments) at least every
    CDPHUB_PROFILE_REFRESH_SECONDS meanwhile and once more at the end
    (``profiles.ingest.refresh``)."""
    batch_size = batch_size or settings.CDPHUB_INGEST_PROCESS_BATCH_SIZE
    total = batches = 0
    refreshed_at = time.monotonic()
    # Claims continue after the last position claimed: scanning from the start each time would
    # walk over the index entries of every row processed since the last vacuum. A last pass from
    # the start picks up rows another worker held (and maybe rolled back) meanwhile.
    after = START
    while max_batches is None or batches < max_batches:
        done, last, deferred = pending_process_batch(batch_size=batch_size, after=after)
        if not done and not deferred:
            if after == START:
                break
            after = START
            continue
        if time.monotonic() - refreshed_at >= settings.CDPHUB_PROFILE_REFRESH_SECONDS:
            queued_profiles_refresh()
            refreshed_at = time.monotonic()
        if not done:
            time.sleep(DEFERRED_PAUSE_SECONDS)  # another worker holds these people: let it commit
        after = last
        total += done
        PROCESSED.inc(done)
        batches += 1 if done else 0
    queued_profiles_refresh()
    return total


def pending_process_batch(
    *, batch_size: int, after: tuple[int, int] = START
) -> tuple[int, tuple[int, int], int]:
    """One batch in one transaction; returns how many rows it processed, the last position
    (lane, id) claimed and how many it left for later (their people were being processed by
    another worker).

    A batch that fails is never retried as a whole: its rows are split in halves, each half in
    a transaction of its own, down to the one message that fails, which is moved to the
    rejected messages with its reason. So a message that cannot be processed, whatever the
    error (a value the database refuses, a row that cannot even be read, a bug in a hook),
    never blocks the rest of its batch or anything staged behind it. Transient errors (a lost
    connection, a deadlock, a cancelled statement) reject nothing: the rows stay staged."""
    try:
        return _process_batch(lambda: _claim_next(after, batch_size))
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        logger.exception("a batch of collected messages failed; isolating the failing message")
    staged = query(STAGED_IDS_SQL, [*after, batch_size])
    done, deferred = _process_isolating([staged_id for staged_id, _ in staged])
    return done, max(((lane, staged_id) for staged_id, lane in staged), default=START), deferred


def _process_batch(claim: Callable[[], list[Staged]]) -> tuple[int, tuple[int, int], int]:
    own_transaction = not connection.in_atomic_block  # a caller's keeps its own settings

    def process() -> tuple[int, tuple[int, int], int]:
        if own_transaction:
            keyed_lookups_only()  # every statement of a batch finds its rows by key
        rows = claim()
        done, deferred = _process_claimed(rows)
        last = max(((row.lane, row.id) for row in rows), default=START)
        return done, last, deferred

    return atomic_retried_on_deadlock(
        process,
        attempts=DEADLOCK_RETRIES,
        retrying="deadlock while processing collected messages; retrying the batch",
    )


def _process_isolating(ids: list[int]) -> tuple[int, int]:
    """Process ``ids`` in one transaction or, if that fails, each half on its own: a batch
    with one bad message costs about two transactions per halving, not one per message."""
    if not ids:
        return 0, 0
    try:
        done, _, deferred = _process_batch(lambda: _claim(query(CLAIM_IDS_SQL, [ids])))
        return done, deferred
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        if len(ids) == 1:
            with request_id_set(staged_request_id(ids[0])):
                logger.warning("collected message %s could not be processed: %s", ids[0], exc)
            return _reject_staged(ids[0], f"processing failed: {first_line(exc)}"), 0
    middle = len(ids) // 2
    first_done, first_deferred = _process_isolating(ids[:middle])
    second_done, second_deferred = _process_isolating(ids[middle:])
    return first_done + second_done, first_deferred + second_deferred


def staged_request_id(staged_id: int) -> str:
    """The id of the request that sent a staged message ('' when unknown)."""
    rows = query(f"SELECT request_id FROM {PENDING_TABLE} WHERE id = %b", [staged_id])  # noqa: S608
    return rows[0][0] if rows else ""


def _claim_next(after: tuple[int, int], batch_size: int) -> list[Staged]:
    """The next staged messages after ``after``, read along the claim-order index."""
    return _claim(query_in_index_order(CLAIM_SQL, [*after, batch_size]))


def _claim(found: list[tuple]) -> list[Staged]:
    rows = [Staged(*row) for row in found]
    for row in rows:
        row.payload = as_json(row.payload)
    return rows


@transaction.atomic
def _reject_staged(staged_id: int, reason: str) -> int:
    """Move one staged row to the rejected messages. It is read without its timestamp and its
    payload as text: the reason it is rejected may be that they cannot be read."""
    found = query(REJECT_READ_SQL, [staged_id])
    if not found:
        return 0  # processed or taken meanwhile by another worker
    source_id, message_id, message_type, payload, received_at = found[0]
    RejectedMessage.objects.create(
        source_id=source_id,
        message_id=message_id,
        type=message_type,
        payload=rejected_payload(payload),
        reason=reason,
        received_at=received_at,
    )
    PendingMessage.objects.filter(pk=staged_id).delete()
    return 1


def rejected_payload(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # JSON that PostgreSQL keeps but Python cannot represent
        return {"unparsed_payload": text}


def first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0][:500]


def _process_claimed(rows: list[Staged]) -> tuple[int, int]:
    """Process the claimed rows whose identifiers this transaction could lock; returns how many
    were processed and how many were left staged for later."""
    if not rows:
        return 0, 0
    usable = []
    # Tracking plans first: a property they omit is no identifier either (plans.staged_check).
    plan_check = plans.staged_check(rows)
    normalize = memoised_normalizer()
    user_ids = known_user_ids((row.payload for row in rows), normalize)
    for row in rows:
        row.identifiers = message_identifiers(row.payload, normalize, user_ids)
        if row.identifiers:
            usable.append(row)
        else:
            _reject_staged(row.id, "no usable identifier: userId and anonymousId are placeholders")
    usable = plan_check.blocked_reject(_drop_suppressed(usable))
    ready = identifiers_try_lock(usable)
    plan_check.omissions_store(ready)
    resolver = BatchResolver(ready)
    resolver.resolve_all()
    resolver.flush()
    hooks.run(ready)
    profiles_refresh_queue(profile_ids={row.profile for row in ready})
    # Last: the counts' rows stay locked only until the commit that follows.
    plan_check.violations_record(ready)
    observed_fields_record(ready)  # written after the commit
    # The ready rows left the staging table with their events, the rejected ones with their
    # RejectedMessage; the others stay for a later claim.
    done = len(ready) + len(rows) - len(usable)
    return done, len(rows) - done


def _drop_suppressed(rows: list[Staged]) -> list[Staged]:
    """Messages about a person erased on request are dropped: their identifiers are on the
    suppression list, and storing the message (even as rejected) would bring them back."""
    from consent.selectors import suppressed_identifiers

    # Identifiers of claimed messages are normalised already: hashed as they are.
    suppressed = suppressed_identifiers(
        {ident for row in rows for ident in row.identifiers}, normalised=True
    )
    if not suppressed:
        return rows
    kept = []
    for row in rows:
        if suppressed.intersection(row.identifiers):
            RejectedMessage.objects.create(
                source_id=row.source_id,
                message_id=row.message_id,
                type=row.type,
                payload={},  # not kept: it identifies an erased person
                reason="dropped: the person was erased on request (suppression list)",
                received_at=row.received_at,
            )
            PendingMessage.objects.filter(pk=row.id).delete()
        else:
            kept.append(row)
    return kept


def identifiers_try_lock(rows: list[Staged]) -> list[Staged]:
    """Transaction-level advisory locks on every identifier of the batch, so that no other
    worker resolves the same person at the same time (two workers seeing one new person would
    create two profiles). Try-locks, never waits: a message whose identifiers another worker
    holds stays staged and is claimed again after that worker commits. Waiting instead would
    make concurrent workers queue behind each other whenever their batches share a visitor."""
    # A batch names each person many times: one key per distinct identifier.
    key_of = {
        ident: identifier_lock_key(ident)
        for ident in {ident for row in rows for ident in row.identifiers}
    }
    keys_of = {row.id: {key_of[ident] for ident in row.identifiers} for row in rows}
    keys = sorted(set(key_of.values()))
    if not keys:
        return rows
    locked = {
        key
        for key, ok in query(
            "SELECT k, pg_try_advisory_xact_lock(k) FROM unnest(%b::bigint[]) AS k", [keys]
        )
        if ok
    }
    return [row for row in rows if keys_of[row.id] <= locked]


def memoised_normalizer():
    """normalize_identifier, remembering results (and refusals) for the values of one batch."""
    results: dict[tuple[str, object], str | InvalidIdentifier] = {}

    def normalize(kind: str, value: object) -> str:
        if not isinstance(value, str | int | float):
            return normalize_identifier(kind, value)
        key = (kind, value)
        if key not in results:
            try:
                results[key] = normalize_identifier(kind, value)
            except InvalidIdentifier as exc:
                results[key] = exc
        result = results[key]
        if isinstance(result, InvalidIdentifier):
            raise result
        return result

    return normalize
