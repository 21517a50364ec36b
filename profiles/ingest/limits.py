"""Rate limits of collection: per source, messages per second with a burst; per userId or
anonymousId of a source, messages per minute (a runaway script in one browser). Over a limit
the sender gets 429 with Retry-After, which analytics.js and the mobile SDKs honour.

Each limit is a token bucket kept as one number per key, its "theoretical arrival time" (the
generic cell rate algorithm): the bucket is full when that time is past, and a message moves
it one interval ahead. With CDPHUB_REDIS_URL the numbers live in Redis and every web process
shares them (one script call per request, for all its keys); without it they live in this
process's memory, right for the single process of ``make run``. The rule itself is written
twice, in Python and in the Redis script, and tests/profiles/test_rate_limits.py runs every
case against both. If Redis cannot be reached, messages are accepted (and logged): a limiter
outage must not lose data."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.utils import timezone

from cdphub.sql import execute
from profiles.models import RateLimitedDay

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """``rate`` messages per ``period`` seconds on average, ``burst`` of them at once; a
    message moves the bucket one ``interval`` on, and it holds ``tolerance`` seconds of them."""

    rate: int
    period: float
    burst: int
    interval: float = field(init=False)
    tolerance: float = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: every message of every request reads them.
        object.__setattr__(self, "interval", self.period / self.rate)
        object.__setattr__(self, "tolerance", self.burst * self.interval)


class Take(NamedTuple):
    """Of ``cost`` messages asked for, ``allowed`` may pass; the rest may be sent again after
    ``retry_after`` seconds."""

    allowed: int
    retry_after: float


def gcra(tat: float, now: float, limit: Limit, cost: int, partial: bool) -> tuple[float, Take]:
    """The bucket's next arrival time and what passes of ``cost`` messages: all or none, or
    with ``partial`` as many as fit. All or none, a full bucket lets a request larger than the
    burst through (a big batch is not refused forever)."""
    tat = max(tat, now)
    fits = max(0, math.floor((now + limit.tolerance - tat) / limit.interval + 1e-9))
    if cost <= fits or (tat == now and not partial):
        allowed = cost
    elif partial:
        allowed = fits
    else:
        allowed = 0
    new_tat = tat + allowed * limit.interval
    retry_after = 0.0
    if allowed < cost:
        # When the next message fits (partial), or the whole request (or the bucket is full).
        wanted = 1 if partial else cost
        retry_after = min(new_tat, new_tat + wanted * limit.interval - limit.tolerance) - now
    return new_tat, Take(allowed, max(retry_after, 0.0))


# --- Where the buckets live -------------------------------------------------------------------


class MemoryBuckets:
    """The buckets of this process."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, asks: list[tuple[str, Limit, int, bool]]) -> list[Take]:
        now = time.time()
        with self._lock:
            if len(self._tats) > 100_000:
                self._tats = {k: t for k, t in self._tats.items() if t > now}
            takes = []
            for key, limit, cost, partial in asks:
                self._tats[key], take = gcra(self._tats.get(key, now), now, limit, cost, partial)
                takes.append(take)
            return takes

    def clear(self) -> None:
        with self._lock:
            self._tats.clear()


# The same rule as gcra(), for all the keys of one request in one atomic call; the clock is
# Redis's, the same for every web process. ARGV: per key interval, tolerance, cost, partial.
GCRA_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local answers = {}
for i, key in ipairs(KEYS) do
    local interval = tonumber(ARGV[i * 4 - 3])
    local tolerance = tonumber(ARGV[i * 4 - 2])
    local cost = tonumber(ARGV[i * 4 - 1])
    local partial = ARGV[i * 4] == '1'
    local tat = math.max(tonumber(redis.call('GET', key) or now), now)
    local fits = math.max(0, math.floor((now + tolerance - tat) / interval + 1e-9))
    local allowed = 0
    if cost <= fits or (tat == now and not partial) then
        allowed = cost
    elseif partial then
        allowed = fits
    end
    local new_tat = tat + allowed * interval
    local retry_after = 0
    if allowed < cost then
        local wanted = cost
        if partial then wanted = 1 end
        retry_after = math.max(0, math.min(new_tat, new_tat + wanted * interval - tolerance) - now)
    end
    if new_tat > now then
        redis.call('SET', key, string.format('%.6f', new_tat), 'PX',
            math.max(1, math.ceil((new_tat - now) * 1000)))
    end
    answers[i] = {allowed, string.format('%.3f', retry_after)}
end
return answers
"""


class RedisBuckets:
    """The buckets every web process shares, in Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._client.register_script(GCRA_SCRIPT)
        self._failing_since = 0.0

    def take(self, asks: list[tuple[str, Limit, int, bool]]) -> list[Take]:
        import redis

        args: list[object] = []
        for _key, limit, cost, partial in asks:
            args += [repr(limit.interval), repr(limit.tolerance), cost, int(partial)]
        try:
            answers = self._script(keys=[f"cdphub:rl:{key}" for key, *_ in asks], args=args)
        except redis.RedisError as exc:
            # Accept rather than lose messages; say so at most once a minute.
            if time.monotonic() - self._failing_since > 60:
                self._failing_since = time.monotonic()
                logger.warning("rate limits not applied: Redis cannot be reached (%s)", exc)
            return [Take(cost, 0.0) for _key, _limit, cost, _partial in asks]
        return [Take(int(allowed), float(retry)) for allowed, retry in answers]

    def clear(self) -> None:
        keys = list(self._client.scan_iter("cdphub:rl:*", count=1000))
        if keys:
            self._client.delete(*keys)


_buckets: MemoryBuckets | RedisBuckets | None = None
_buckets_lock = threading.Lock()


def buckets() -> MemoryBuckets | RedisBuckets:
    global _buckets
    with _buckets_lock:
        if _buckets is None:
            url = settings.CDPHUB_REDIS_URL
            _buckets = RedisBuckets(url) if url else MemoryBuckets()
        return _buckets


def buckets_reset() -> None:
    """Forget every bucket and the backend (tests that change the settings)."""
    global _buckets
    with _buckets_lock:
        if _buckets is not None:
            _buckets.clear()
        _buckets = None


# --- The limits of a request ----------------------------------------------------------------


@dataclass(frozen=True)
class SourceLimits:
    """A source's limits, None where there is none (its fields, or the defaults)."""

    source: Limit | None
    identifier: Limit | None

    @classmethod
    def of(cls, per_second: int | None, burst: int | None, per_minute: int | None) -> SourceLimits:
        per_second = settings.CDPHUB_SOURCE_RATE_LIMIT if per_second is None else per_second
        burst = settings.CDPHUB_SOURCE_RATE_BURST if burst is None else burst
        per_minute = settings.CDPHUB_IDENTIFIER_RATE_LIMIT if per_minute is None else per_minute
        return cls(
            Limit(per_second, 1.0, max(burst, 1)) if per_second else None,
            Limit(per_minute, 60.0, per_minute) if per_minute else None,
        )


@dataclass
class Verdict:
    """What may pass of a request's messages: all or none for the source's limit; per
    identifier, its first messages up to its limit. ``refused`` holds the indexes of messages
    refused for their identifier."""

    source_refused: bool = False
    refused: dict[int, str] = field(default_factory=dict)
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


def sender_id(message: object) -> str | None:
    if not isinstance(message, dict):
        return None
    for key in ("userId", "anonymousId"):
        value = message.get(key)
        if value not in (None, "") and not isinstance(value, dict | list):
            return f"{key}:{value}"
    return None


def messages_admit(source_id: int, limits: SourceLimits, messages: list[object]) -> Verdict:
    """Apply the source's limits to a request's messages (one bucket call for all of them)."""
    asks: list[tuple[str, Limit, int, bool]] = []
    if limits.source is not None:
        asks.append((f"s:{source_id}", limits.source, len(messages), False))
    by_sender: dict[str, list[int]] = {}
    if limits.identifier is not None:
        for index, message in enumerate(messages):
            if (sender := sender_id(message)) is not None:
                by_sender.setdefault(sender, []).append(index)
        for sender, indexes in by_sender.items():
            asks.append((f"i:{source_id}:{sender}", limits.identifier, len(indexes), True))
    if not asks:
        return Verdict()
    takes = buckets().take(asks)
    verdict = Verdict()
    if limits.source is not None:
        source_take, takes = takes[0], takes[1:]
        if source_take.allowed < len(messages):
            return Verdict(source_refused=True, retry_after=source_take.retry_after)
    for (sender, indexes), take in zip(by_sender.items(), takes, strict=True):
        if take.allowed < len(indexes):
            kind = sender.split(":", 1)[0]
            reason = (
                f"rate limited: this {kind} sent more than {limits.identifier.rate} messages "
                "in a minute"
            )
            verdict.refused.update((index, reason) for index in indexes[take.allowed :])
            verdict.retry_after = max(verdict.retry_after, take.retry_after)
    return verdict


RATE_LIMITED_SQL = f"""
    INSERT INTO {RateLimitedDay._meta.db_table} (day, source_id, source_limited,
        identifier_limited)
    VALUES (%b, %b, %b, %b)
    ON CONFLICT (day, source_id) DO UPDATE SET
        source_limited = {RateLimitedDay._meta.db_table}.source_limited
            + EXCLUDED.source_limited,
        identifier_limited = {RateLimitedDay._meta.db_table}.identifier_limited
            + EXCLUDED.identifier_limited
"""  # noqa: S608 - table name from model metadata; values are parameters


def rate_limited_count(source_id: int, *, source_limited: int, identifier_limited: int) -> None:
    """Count messages refused for the limits, on today's row of the source (autocommit: the
    request stores nothing else when it is refused)."""
    if source_limited or identifier_limited:
        execute(
            RATE_LIMITED_SQL,
            [timezone.localdate(), source_id, source_limited, identifier_limited],
        )
