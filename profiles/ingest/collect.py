"""Event collection, the request side of the Segment HTTP Tracking API: read the body, find the
source, validate each message, store the good ones in the staging table and the bad ones with
their reason. Nothing here resolves identities: that runs later, in bulk
(profiles.ingest.processing).

One module: it is the request's hot path, read top to bottom as one request goes through it."""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdphub.background import BackgroundThread, Throttle
from cdphub.hashing import secret_hash
from cdphub.logs import current_request_id
from cdphub.parsers import NUL, nul_paths
from cdphub.sql import execute, execute_together
from profiles.ingest.limits import SourceLimits
from profiles.models import (
    PROCESSING_LANES,
    Event,
    PendingMessage,
    RejectedMessage,
    SeenMessage,
    Source,
)
from profiles.resolution.normalize import junk_values

PENDING_TABLE = PendingMessage._meta.db_table
SEEN_TABLE = SeenMessage._meta.db_table

logger = logging.getLogger(__name__)

MESSAGE_TYPES = frozenset(Event.Type.values)
# Per type, the fields a message must carry besides userId/anonymousId (Segment's spec).
REQUIRED_FIELDS = {"track": ("event",), "alias": ("previousId",), "group": ("groupId",)}
# Batch-level keys copied into each message that does not set them itself.
BATCH_DEFAULTS = ("context", "integrations")
# A source's key, origins and limits are read at most this often per web process: a
# deactivated source or a rotated key is refused everywhere within this time.
WRITE_KEY_CACHE_SECONDS = 1.0


class CollectError(Exception):
    """A request the collection API refuses as a whole; ``code`` is stable, ``message`` says why."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class CollectResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)
    rate_limited: list[dict] = field(default_factory=list)


# --- Authentication -------------------------------------------------------------------------

_source_cache: dict[str, tuple[float, int | None]] = {}


def write_key_from_headers(meta: dict) -> str | None:
    """The write key as HTTP Basic username (password empty) or in an ``X-Write-Key`` header."""
    authorization = meta.get("HTTP_AUTHORIZATION", "")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return meta.get("HTTP_X_WRITE_KEY") or None


@dataclass(frozen=True)
class SourceAccess:
    """What collection needs to know of a source: its id, the web origins whose pages may
    send with its key, and its rate limits."""

    id: int
    origins: tuple[str, ...] = ()
    limits: SourceLimits = SourceLimits(None, None)

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.origins or origin_normalise(origin) in self.origins


def origin_normalise(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def source_access(write_key: str | None) -> SourceAccess | None:
    """The active source with this write key. Cached for a second per process: every
    collection request needs it, and a deactivated source is refused within that second."""
    if not write_key:
        return None
    now = time.monotonic()
    cached = _source_cache.get(write_key)
    if cached and cached[0] > now:
        return cached[1]
    row = (
        Source.objects.filter(write_key_hash=secret_hash(write_key), is_active=True)
        .values_list(
            "id",
            "allowed_origins",
            "rate_limit_per_second",
            "rate_limit_burst",
            "identifier_limit_per_minute",
        )
        .first()
    )
    access = None
    if row is not None:
        source_id, origins, *limits = row
        access = SourceAccess(
            source_id,
            tuple(origin_normalise(o) for o in origins or ()),
            SourceLimits.of(*limits),
        )
    if len(_source_cache) > 10_000:
        _source_cache.clear()
    _source_cache[write_key] = (now + WRITE_KEY_CACHE_SECONDS, access)
    return access


def source_for_write_key(write_key: str | None) -> int | None:
    """The id of the active source with this write key (``source_access``)."""
    access = source_access(write_key)
    return access.id if access is not None else None


def client_ip(meta: dict) -> str:
    """The sender's address: the connection's, or with CDPHUB_TRUSTED_PROXIES proxies in front,
    the address the last of them saw (``X-Forwarded-For`` entries a client adds itself are
    not trusted)."""
    proxies = settings.CDPHUB_TRUSTED_PROXIES
    if proxies > 0:
        forwarded = [
            a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return meta.get("REMOTE_ADDR", "")


def context_ip_fill(messages: list, ip: str) -> None:
    """Browsers and apps send no ``context.ip``: the request's address is the sender's."""
    if not ip:
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        context = message.get("context")
        if context is None:
            message["context"] = {"ip": ip}
        elif isinstance(context, dict) and "ip" not in context:
            context["ip"] = ip


def source_cache_clear() -> None:
    _source_cache.clear()


# --- Body -----------------------------------------------------------------------------------


def body_read(raw: bytes, *, content_encoding: str, max_bytes: int) -> object:
    """The JSON document of a request body, gunzipped if needed; refuses oversize and bad JSON."""
    if content_encoding.strip().lower() == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # Inflate at most one byte past the limit: a small gzip bomb cannot exhaust memory.
            raw = inflater.decompress(raw, max_bytes + 1)
        except zlib.error:
            raise CollectError(400, "invalid_gzip", "the body is not valid gzip data") from None
    if len(raw) > max_bytes:
        raise CollectError(
            400, "payload_too_large", f"the body is larger than the limit of {max_bytes} bytes"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CollectError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def batch_messages(body: object, message_type: str | None) -> list[object]:
    """The messages of a request: ``batch`` of /v1/batch (batch context merged into each one),
    or the body itself for /v1/<type>."""
    if not isinstance(body, dict):
        raise CollectError(400, "invalid_body", "the body must be a JSON object")
    if message_type is not None:
        return [{**body, "type": message_type}]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise CollectError(400, "invalid_batch", "'batch' must be a list of messages")
    limit = settings.CDPHUB_INGEST_MAX_BATCH_MESSAGES
    if len(batch) > limit:
        raise CollectError(
            400, "batch_too_large", f"the batch has {len(batch)} messages, more than {limit}"
        )
    defaults = {key: body[key] for key in BATCH_DEFAULTS if isinstance(body.get(key), dict)}
    sent_at = body.get("sentAt")
    messages = []
    for message in batch:
        if isinstance(message, dict):
            for key, value in defaults.items():
                own = message.get(key)
                message[key] = {**value, **own} if isinstance(own, dict) else value
            if sent_at and not message.get("sentAt"):
                message["sentAt"] = sent_at
        messages.append(message)
    return messages


# --- Validation -----------------------------------------------------------------------------

# An event time outside this window says the sender's clock is broken, not that the event is
# history: the event is stored at the time it was received (the message keeps what was sent).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
# orjson refuses to write JSON nested deeper than this; so do we, with a clear reason.
MAX_NESTING = 254
# A rejected message is kept for review, cut below this depth so that any reader can show it.
REJECTED_MAX_NESTING = 32


@dataclass
class ValidMessage:
    message_id: str
    type: str
    payload: str
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    lane: int = 0


def processing_lane(message: dict, junk: frozenset[str] = frozenset()) -> int:
    """The lane of a staged message (``PendingMessage.lane``): from the sender's anonymous id,
    the same for all of one browser's or device's messages, else its user id. A placeholder
    anonymous id ("undefined") names nobody: it would put every such sender in one lane."""
    anonymous_id = message.get("anonymousId")
    sender = anonymous_id if usable_id(anonymous_id, junk) else message.get("userId") or ""
    return zlib.crc32(str(sender).encode()) % PROCESSING_LANES


def parse_time(value: object, name: str) -> datetime | None:
    """An ISO 8601 date-time; one without a time zone is read as UTC."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"'{name}' is not an ISO 8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """The moment in UTC, or None when it falls outside what a datetime holds (year 1 at
    +14:00 is the last day of year 0 in UTC)."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def event_time(
    original: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction ``receivedAt - (sentAt - originalTimestamp)``, the time
    sent as it is without ``sentAt``, the time received without either; a result outside
    [EARLIEST_EVENT_TIME, received_at + FUTURE_TOLERANCE] is the time received."""
    if original is None:
        return received_at
    try:
        corrected = original if sent_at is None else received_at - (sent_at - original)
    except OverflowError:
        return received_at
    if not EARLIEST_EVENT_TIME <= corrected <= received_at + FUTURE_TOLERANCE:
        return received_at
    return corrected.astimezone(UTC)


def message_validate(
    message: object, received_at: datetime, junk: frozenset[str] | None = None
) -> ValidMessage:
    """The message ready for staging, or ValueError saying what is wrong."""
    junk = junk if junk is not None else junk_values()
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    message_type = message.get("type")
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"'type' must be one of {', '.join(sorted(MESSAGE_TYPES))}")
    if not any(usable_id(message.get(key), junk) for key in ("userId", "anonymousId")):
        raise ValueError("userId or anonymousId is required (and must not be a placeholder)")
    for required in REQUIRED_FIELDS.get(message_type, ()):
        value = message.get(required)
        if value in (None, "") or isinstance(value, dict | list):
            raise ValueError(f"{message_type} needs '{required}'")
    for optional_object in ("properties", "traits", "context"):
        if message.get(optional_object) is not None and not isinstance(
            message[optional_object], dict
        ):
            raise ValueError(f"'{optional_object}' must be a JSON object")
    message_id = str(message.get("messageId") or "") or str(uuid.uuid4())
    if len(message_id) > 255:
        raise ValueError("'messageId' is longer than 255 characters")
    message["messageId"] = message_id
    original = parse_time(message.get("timestamp") or message.get("originalTimestamp"), "timestamp")
    try:
        sent_at = parse_time(message.get("sentAt"), "sentAt")
    except ValueError:
        # Transport metadata, read only for the clock correction: not worth losing the event.
        sent_at = None
        del message["sentAt"]
    payload = message_json(message)
    return ValidMessage(
        message_id,
        message_type,
        payload,
        event_time(original, sent_at, received_at),
        as_utc(original),
        as_utc(sent_at),
        processing_lane(message, junk),
    )


def message_json(message: dict) -> str:
    """The message as the JSON text to store, or ValueError if PostgreSQL could not store it
    or it is larger than CDPHUB_INGEST_MAX_MESSAGE_BYTES (counted in bytes, as sent)."""
    try:
        payload = orjson.dumps(message)
    except TypeError as exc:
        if "Recursion" in str(exc):
            raise ValueError(f"the message is nested deeper than {MAX_NESTING} levels") from None
        raise ValueError(f"the message cannot be stored as JSON: {exc}") from None  # big ints
    limit = settings.CDPHUB_INGEST_MAX_MESSAGE_BYTES
    if len(payload) > limit:
        raise ValueError(f"the message is {len(payload)} bytes, more than the limit of {limit}")
    # orjson writes NUL as \u0000; the search is cheap, the walk runs only when it matches.
    if b"\\u0000" in payload and (paths := nul_paths(message)):
        where = ", ".join(paths).replace("non_field_errors", "a key of the message")
        raise ValueError(f"a NUL character (\\u0000) in {where}: it cannot be stored")
    return payload.decode()


def usable_id(value: object, junk: frozenset[str]) -> bool:
    """Cheap pre-check of userId/anonymousId (processing normalises them fully)."""
    if value is None or isinstance(value, bool | dict | list):
        return False
    text = str(value).strip()
    return 0 < len(text) <= 255 and text.lower() not in junk


# --- Staging --------------------------------------------------------------------------------

# A batch's messages are bound server-side in binary (%b), as arrays: arrays of strings are
# sent as they are, without client-side quoting, which costs more than the INSERT itself for 100
# JSON payloads. A single message (a browser's call) is one row of values, sent with the
# duplicates' check in one round trip (_stage_one): its round trips cost more than its SQL.
STAGE_SQL = f"""
    INSERT INTO {PENDING_TABLE}
        (source_id, message_id, type, payload, timestamp, original_timestamp, sent_at, lane,
         received_at, request_id)
    SELECT {{p}}, m, t, p::jsonb, ts, ot, sa, l, {{p}}, {{p}}
    FROM {{rows}} AS u(m, t, p, ts, ot, sa, l)
    ON CONFLICT (source_id, message_id) DO NOTHING
"""  # noqa: S608 - table names from model metadata; values are parameters
BATCH_ROWS = (
    "unnest(%b::text[], %b::text[], %b::text[],"
    " %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::smallint[])"
)
ONE_ROW = (
    "(VALUES (%s::text, %s::text, %s::text, %s::timestamptz, %s::timestamptz, %s::timestamptz,"
    " %s::smallint))"
)
# Messages whose event is stored already (within the de-duplication window) are duplicates. A
# statement of its own, after the INSERT: if a worker was moving a copy from staging to events,
# the INSERT waited for it to commit, and only a new statement sees what it committed. The
# copies are looked up among the seen message ids first (an index probe per message, finding
# nothing but a copy), so staging rows are read only for a copy.
UNSTAGE_DUPLICATES_SQL = f"""
    WITH copies AS MATERIALIZED (
        SELECT s.message_id FROM {SEEN_TABLE} s
        WHERE s.source_id = {{p}} AND s.message_id = ANY({{ids}})
    )
    DELETE FROM {PENDING_TABLE} pm
    USING copies
    WHERE pm.source_id = {{p}} AND pm.message_id = copies.message_id AND pm.received_at = {{p}}
"""  # noqa: S608 - table names from model metadata; values are parameters
STAGE_BATCH_SQL = STAGE_SQL.format(p="%b", rows=BATCH_ROWS)
UNSTAGE_BATCH_SQL = UNSTAGE_DUPLICATES_SQL.format(p="%b", ids="%b::text[]")
STAGE_ONE_SQL = ";".join(
    (
        STAGE_SQL.format(p="%s", rows=ONE_ROW),
        UNSTAGE_DUPLICATES_SQL.format(p="%s", ids="ARRAY[%s::text]"),
    )
)


def messages_collect(
    *, source_id: int, messages: list[object], rate_limited: dict[int, str] | None = None
) -> CollectResult:
    """Validate and store messages: good ones in the staging table (duplicates of any earlier
    message of this source are skipped), bad ones as RejectedMessage with their reason, all or
    nothing in one transaction (one round trip for a single valid message). Processing is
    scheduled once the rows are committed.
    ``rate_limited``: the indexes of messages refused for a rate limit, with the reason; they
    are neither stored nor kept, only reported back (and counted by the caller)."""
    received_at = timezone.now()
    result = CollectResult()
    valid: list[ValidMessage] = []
    rejected: list[RejectedMessage] = []
    junk = junk_values()
    for index, message in enumerate(messages):
        if rate_limited and index in rate_limited:
            result.rate_limited.append({"index": index, "reason": rate_limited[index]})
            continue
        try:
            valid.append(message_validate(message, received_at, junk))
        except ValueError as exc:
            reason = f"message {index}: {exc}" if len(messages) > 1 else str(exc)
            result.rejected.append({"index": index, "reason": reason})
            rejected.append(rejected_message_build(source_id, message, reason, received_at))
    if len(valid) == 1 and not rejected:
        result.accepted = _stage_one(source_id, valid[0], received_at)
        result.duplicates = 1 - result.accepted
    else:
        result.accepted, result.duplicates = _store(source_id, valid, rejected, received_at)
    if result.accepted:
        transaction.on_commit(processing_schedule)
    return result


@transaction.atomic
def _store(
    source_id: int, valid: list[ValidMessage], rejected: list[RejectedMessage], received_at
) -> tuple[int, int]:
    """Stage the valid messages and keep the rejected ones, all or nothing; how many were
    staged and how many were duplicates."""
    accepted = 0
    if valid:
        accepted = _stage(source_id, valid, received_at)
    if rejected:
        RejectedMessage.objects.bulk_create(rejected)
    return accepted, len(valid) - accepted


def _stage_one(source_id: int, message: ValidMessage, received_at: datetime) -> int:
    """Stage one message, unless it is a duplicate: 1 or 0."""
    staged, copies = execute_together(
        STAGE_ONE_SQL,
        [
            source_id,
            received_at,
            current_request_id(),
            message.message_id,
            message.type,
            message.payload,
            message.timestamp,
            message.original_timestamp,
            message.sent_at,
            message.lane,
            source_id,
            message.message_id,
            source_id,
            received_at,
        ],
    )
    return staged - copies


def _stage(source_id: int, valid: list[ValidMessage], received_at: datetime) -> int:
    """How many messages were staged: inserted, less the copies of events a worker had just
    stored (see UNSTAGE_DUPLICATES_SQL)."""
    message_ids = [m.message_id for m in valid]
    staged = execute(
        STAGE_BATCH_SQL,
        [
            source_id,
            received_at,
            current_request_id(),
            message_ids,
            [m.type for m in valid],
            [m.payload for m in valid],
            [m.timestamp for m in valid],
            [m.original_timestamp for m in valid],
            [m.sent_at for m in valid],
            [m.lane for m in valid],
        ],
    )
    if staged:
        duplicates = [source_id, message_ids, source_id, received_at]
        staged -= execute(UNSTAGE_BATCH_SQL, duplicates)
    return staged


def rejected_message_build(
    source_id: int, message: object, reason: str, received_at: datetime
) -> RejectedMessage:
    as_dict = message if isinstance(message, dict) else {}
    return RejectedMessage(
        source_id=source_id,
        message_id=storable(str(as_dict.get("messageId") or "")[:255]),
        type=storable(str(as_dict.get("type") or "")[:20]),
        payload=storable(message if isinstance(message, dict | list) else {"value": message}),
        reason=storable(reason),
        received_at=received_at,
    )


def storable(value: object, depth: int = 0) -> object:
    """A copy of a rejected message that PostgreSQL and every reader can keep and show: NUL
    characters as U+FFFD, nesting cut at REJECTED_MAX_NESTING, integers beyond 64 bits as
    text."""
    if isinstance(value, str):
        return value.replace(NUL, "\ufffd")
    if isinstance(value, bool | float | None):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if depth >= REJECTED_MAX_NESTING:
        return f"(cut: nested deeper than {REJECTED_MAX_NESTING} levels)"
    if isinstance(value, dict):
        return {storable(key, depth): storable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item, depth + 1) for item in value]
    return storable(str(value), depth)


@transaction.atomic
def rejected_message_retry(*, rejected: RejectedMessage) -> str | None:
    """Validate a rejected message again (after its payload or the sender was fixed): stage it
    and mark it retried, or return the reason it is still refused."""
    message = rejected.payload
    try:
        valid = message_validate(message, rejected.received_at)
    except ValueError as exc:
        rejected.reason = str(exc)
        rejected.save(update_fields=["reason"])
        return str(exc)
    PendingMessage.objects.bulk_create(
        [
            PendingMessage(
                source_id=rejected.source_id,
                message_id=valid.message_id,
                type=valid.type,
                payload=orjson.loads(valid.payload),
                timestamp=valid.timestamp,
                original_timestamp=valid.original_timestamp,
                sent_at=valid.sent_at,
                received_at=rejected.received_at,
            )
        ],
        ignore_conflicts=True,
    )
    rejected.status = RejectedMessage.Status.RETRIED
    rejected.retried_at = timezone.now()
    rejected.save(update_fields=["status", "retried_at"])
    transaction.on_commit(processing_schedule)
    return None


# --- Scheduling the processing --------------------------------------------------------------


def processing_schedule() -> None:
    """Start processing of staged messages as CDPHUB_INGEST_PROCESSING says. The request that
    staged them never waits for it, except in "inline" mode. In "process" mode the processing
    process looks for them itself, and in "off" mode nothing is started."""
    mode = settings.CDPHUB_INGEST_PROCESSING
    if mode == "celery":
        if _task_throttle.ready():
            from profiles.tasks import process_pending_task

            process_pending_task.delay()
    elif mode == "background":
        _drainer.wake()
    elif mode == "inline":
        from profiles.ingest.processing import pending_process

        pending_process()


def _process_pending() -> None:
    from profiles.ingest.processing import pending_process

    pending_process()


_task_throttle = Throttle()
_drainer = BackgroundThread(
    "pending-drainer",
    _process_pending,
    failure="processing collected messages failed; they stay staged",
)
