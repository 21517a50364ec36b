"""The delivery engine every destination shares: the outbox, the sender, retries, dead letters
and pausing a destination that keeps failing.

The contract, stated once:

- **Outbox.** What to send is a ``Delivery`` row written by ``outbox_add`` in the transaction
  of the change that causes it (a processed event), so a crash can neither lose a delivery nor
  invent one. The sender is queued after that commit.
- **Order and one sender per destination.** A destination's rows are sent in id order, one
  batch at a time: a transaction-level advisory lock per destination (try-lock: a busy
  destination is skipped, never waited on) keeps a second sender out, and a batch waiting for
  its retry holds back everything behind it.
- **Batches and idempotency.** A batch is fixed before its first attempt (its rows get a
  ``batch_key``, committed on their own), then sent in a second transaction that claims its
  rows ``FOR UPDATE SKIP LOCKED`` and records the outcome. A sender killed in the middle rolls
  that transaction back: the rows are still pending in the same batch, and the next sender
  sends them again with the same ``Idempotency-Key``. Delivery is at least once; a receiver
  drops a key it has seen.
- **Consent at send time.** Each row's person is followed through merges and asked the
  consent selector for the destination's purpose just before sending: someone who withdrew
  meanwhile is skipped (``skipped``, not failed); an erased person's rows are deleted with
  them, and a profile that no longer exists is never sent.
- **Failures.** Transient ones (no connection, timeout, 5xx, 408/425/429) retry with
  exponential backoff and jitter, never sooner than the receiver's ``Retry-After``; permanent
  ones (other 4xx, a redirect, a refused URL) make the batch dead letters, with the response,
  to be retried by hand (``deliveries_retry``). After ``CDPHUB_DELIVERY_PAUSE_AFTER_FAILURES``
  failed attempts in a row the destination is paused, with the reason.
- **Where it runs.** ``CDPHUB_DELIVERY``: a Celery task queued after commit (throttled, plus a
  beat entry as a safety net), a background thread of the process without a broker, inline
  (tests, debugging), or off (only ``deliveries_send``).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from cdphub.audit import audit_record
from cdphub.background import BackgroundThread, Throttle
from cdphub.metrics import DELIVERED_ITEMS, DELIVERIES
from cdphub.models import Delivery, DeliveryAttempt
from cdphub.sql import execute, query
from profiles.destinations.kinds import Outgoing, SendResult, kind_get
from profiles.destinations.selectors import deliverable_profiles, survivors
from profiles.destinations.services import destination_pause
from profiles.models import Destination

logger = logging.getLogger(__name__)

# Advisory lock keys of destinations: (class id, destination id), apart from other locks.
LOCK_CLASS = 0x0DE1


@dataclass(frozen=True)
class OutboxRow:
    """One item for one destination, about one person (the profile as resolved when it was
    queued). ``requires_consent``: False for what takes data away (a removal from a synced
    audience), sent whatever the person's consent."""

    destination_id: int
    profile_id: int | None
    payload: dict
    requires_consent: bool = True


# --- The outbox -----------------------------------------------------------------------------


def outbox_add(rows: Iterable[OutboxRow]) -> int:
    """Write rows to the outbox, in the caller's transaction and in their order; the sender is
    queued after it commits. Returns how many were written."""
    now = timezone.now()
    deliveries = [
        Delivery(
            destination_id=row.destination_id,
            profile_id=row.profile_id,
            payload=row.payload,
            requires_consent=row.requires_consent,
            next_attempt_at=now,
        )
        for row in rows
    ]
    if not deliveries:
        return 0
    Delivery.objects.bulk_create(deliveries, batch_size=1000)
    transaction.on_commit(deliveries_schedule)
    return len(deliveries)


# --- The sender -----------------------------------------------------------------------------


class Queued(NamedTuple):
    """A row of a batch being sent, as the sender reads it (a thousand of them per batch:
    tuples, not model instances)."""

    pk: int
    profile_id: int | None
    payload: dict
    requires_consent: bool
    attempts: int
    created_at: datetime


# listener(destination, rows sent, result): told how each attempt ended, in its transaction (the
# consent app logs a destination's answer to an erasure on the request).
OutcomeListener = Callable[[Destination, list[Queued], SendResult], None]
_outcome_listeners: list[OutcomeListener] = []


def register_outcome_listener(listener: OutcomeListener) -> None:
    if listener not in _outcome_listeners:
        _outcome_listeners.append(listener)


def _try_lock(destination_id: int) -> bool:
    return query("SELECT pg_try_advisory_xact_lock(%b, %b)", [LOCK_CLASS, destination_id])[0][0]


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (half fixed, half random, so that many destinations
    failing together do not retry together), never sooner than the receiver asked."""
    delay = min(
        settings.CDPHUB_DELIVERY_BACKOFF_MAX_SECONDS,
        settings.CDPHUB_DELIVERY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1),
    )
    delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not a secret
    return max(delay, retry_after or 0)


def outbox_queue(destination_id: int) -> QuerySet[Delivery]:
    """The destination's waiting rows in queue order, read through the outbox index. The
    destination is a range of one and the order names it, so that the order is the index's
    own: with an equality the planner may take the primary key's order instead whenever most
    rows look pending (a backlog, or statistics taken before it was sent), and then read
    every row already delivered on the way to the head, for each batch."""
    return Delivery.objects.filter(
        destination__gte=destination_id,
        destination__lte=destination_id,
        status=Delivery.Status.PENDING,
    ).order_by("destination_id", "id")


def _batch_form(destination: Destination, now) -> str | None:
    """The key of the destination's next batch, formed now if none waits; None when nothing
    is due. Runs under the destination's lock and commits on its own, so that a batch keeps
    its rows and key whatever happens to the attempt that follows."""
    head = outbox_queue(destination.pk).values("batch_key", "next_attempt_at").first()
    if head is None or (head["next_attempt_at"] and head["next_attempt_at"] > now):
        return None  # empty, or the head waits for its retry: nothing behind it may pass
    if head["batch_key"]:
        return head["batch_key"]
    key = uuid.uuid4().hex
    formed = execute(
        BATCH_FORM_SQL,
        [
            destination.pk,
            destination.pk,
            destination.batch_size,
            destination.batch_size,
            now - timedelta(seconds=destination.batch_interval_seconds),
            key,
        ],
    )
    return key if formed else None  # nothing formed: still filling the batch


# The next rows without a batch, given the key in one statement when they fill a batch or the
# first has waited the destination's interval (under the destination's lock: no other sender
# gives them a key). The outbox index reads them in order and stops there (as in outbox_queue).
BATCH_FORM_SQL = f"""
WITH head AS (
    SELECT id, created_at FROM {Delivery._meta.db_table}
    WHERE destination_id BETWEEN %b AND %b AND status = 'pending' AND batch_key = ''
    ORDER BY destination_id, id LIMIT %b
), due AS (
    SELECT id FROM head
    WHERE (SELECT count(*) FROM head) >= %b OR (SELECT min(created_at) FROM head) <= %b
)
UPDATE {Delivery._meta.db_table} d SET batch_key = %b
FROM due WHERE d.id = due.id
"""  # noqa: S608 - table names from model metadata; values are parameters


def destination_send_batch(destination_id: int) -> bool:
    """Send the destination's next due batch; returns whether one was handled (sent, failed,
    or all skipped), False when nothing was due or another sender holds the destination."""
    now = timezone.now()
    with transaction.atomic():
        if not _try_lock(destination_id):
            return False
        destination = Destination.objects.filter(
            pk=destination_id, status=Destination.Status.ACTIVE
        ).first()
        if destination is None:
            return False
        key = _batch_form(destination, now)
    if key is None:
        return False
    with transaction.atomic():
        if not _try_lock(destination_id):
            return False
        destination = Destination.objects.filter(
            pk=destination_id, status=Destination.Status.ACTIVE
        ).first()
        if destination is None:  # paused or deleted meanwhile
            return False
        rows = [
            Queued(pk, profile_id, orjson.loads(payload), requires_consent, attempts, created)
            for pk, profile_id, payload, requires_consent, attempts, created in (
                Delivery.objects.select_for_update(skip_locked=True)
                .filter(destination=destination, batch_key=key, status=Delivery.Status.PENDING)
                .order_by("id")
                # The payload as text, decoded here: a thousand of them per batch.
                .values_list(
                    "id",
                    "profile_id",
                    Cast("payload", TextField()),
                    "requires_consent",
                    "attempts",
                    "created_at",
                )[: destination.batch_size]
            )
        ]
        if not rows:
            return False
        _batch_send(destination, key, rows)
    return True


def _recipients(destination: Destination, rows: list[Queued]) -> dict[int, int]:
    """Each row that may be sent now, with the profile id it is sent as (the survivor of
    merges): a row that requires consent when its person has the destination's purpose; one
    that takes data away (a removal, a deletion) always, as the person it was queued for when
    they are gone, or as nobody (an erasure's deletion names the people itself)."""
    consented = deliverable_profiles(
        destination, {r.profile_id for r in rows if r.profile_id and r.requires_consent}
    )
    removed = survivors(r.profile_id for r in rows if r.profile_id and not r.requires_consent)
    sent_as = {}
    for row in rows:
        if not row.requires_consent:
            sent_as[row.pk] = removed.get(row.profile_id, row.profile_id)
        elif row.profile_id in consented:
            sent_as[row.pk] = consented[row.profile_id]
    return sent_as


def _batch_send(destination: Destination, key: str, rows: list[Queued]) -> None:
    now = timezone.now()
    sent_as = _recipients(destination, rows)
    sendable = [r for r in rows if r.pk in sent_as]
    skipped = [r.pk for r in rows if r.pk not in sent_as]
    if skipped:
        Delivery.objects.filter(pk__in=skipped).update(
            status=Delivery.Status.SKIPPED,
            last_error=f"not sent: no consent for {destination.purpose_code} when it was due, "
            "or the person is gone",
            updated_at=now,
        )
    if not sendable:
        return
    kind = kind_get(destination.kind)
    items = [
        {**r.payload, "profileId": sent_as[r.pk]} if sent_as[r.pk] else r.payload for r in sendable
    ]
    waited = now - min(r.created_at for r in sendable)
    started = time.monotonic()
    if kind is None:
        result = SendResult(SendResult.PERMANENT, error=f"unknown kind {destination.kind!r}")
    else:
        result = kind.send(
            Outgoing(
                destination_id=destination.pk,
                name=destination.name,
                config=destination.config,
                secret=destination.signing_secret,
                items=items,
                idempotency_key=key,
            )
        )
    latency_ms = int((time.monotonic() - started) * 1000)
    DeliveryAttempt.objects.create(
        destination=destination,
        batch_key=key,
        items=len(sendable),
        outcome=result.outcome,
        status_code=result.status_code,
        latency_ms=latency_ms,
        waited_ms=max(0, int(waited.total_seconds() * 1000)),
        error=result.error[:500],
    )
    DELIVERIES.labels(destination.kind, result.outcome).inc()
    DELIVERED_ITEMS.labels(destination.kind, result.outcome).inc(len(sendable))
    for listener in _outcome_listeners:
        listener(destination, sendable, result)
    # The rows sent: the batch's rows still pending (the skipped ones are not any more), by
    # their id range so that the outbox index is read no further.
    batch = Delivery.objects.filter(
        destination=destination,
        status=Delivery.Status.PENDING,
        id__gte=sendable[0].pk,
        id__lte=sendable[-1].pk,
        batch_key=key,
    )
    now = timezone.now()
    if result.outcome == SendResult.DELIVERED:
        batch.update(
            status=Delivery.Status.DELIVERED,
            attempts=F("attempts") + 1,
            last_status_code=result.status_code,
            last_error="",
            delivered_at=now,
            updated_at=now,
        )
        if destination.consecutive_failures:
            Destination.objects.filter(pk=destination.pk).update(consecutive_failures=0)
        return
    attempts = max(r.attempts for r in sendable) + 1
    common = {
        "attempts": F("attempts") + 1,
        "last_status_code": result.status_code,
        "last_error": result.error[:500],
        "updated_at": now,
    }
    if result.outcome == SendResult.TRANSIENT:
        wait = backoff_seconds(attempts, result.retry_after)
        batch.update(next_attempt_at=now + timedelta(seconds=wait), **common)
    else:
        batch.update(status=Delivery.Status.DEAD, response_body=result.response, **common)
    failures = destination.consecutive_failures + 1
    Destination.objects.filter(pk=destination.pk).update(consecutive_failures=failures)
    destination.consecutive_failures = failures
    if failures >= settings.CDPHUB_DELIVERY_PAUSE_AFTER_FAILURES:
        destination_pause(
            destination=destination,
            reason=f"paused automatically after {failures} failed deliveries in a row; "
            f"the last: {result.error}",
        )


def deliveries_send(*, destination_ids: Iterable[int] | None = None) -> int:
    """Send every due batch of the active destinations (each in turn, so one slow receiver
    does not hold the others back for more than a batch at a time); returns how many batches
    were handled. What waits for a retry or to fill a batch is left for a later run."""
    handled = 0
    while True:
        active = Destination.objects.filter(status=Destination.Status.ACTIVE)
        if destination_ids is not None:
            active = active.filter(pk__in=list(destination_ids))
        progressed = False
        for destination_id in active.order_by("pk").values_list("pk", flat=True):
            if destination_send_batch(destination_id):
                handled += 1
                progressed = True
        if not progressed:
            return handled


def deliveries_waiting() -> bool:
    """Whether an active destination has rows waiting (due now or later)."""
    return Delivery.objects.filter(
        status=Delivery.Status.PENDING, destination__status=Destination.Status.ACTIVE
    ).exists()


# --- Dead letters and reads -----------------------------------------------------------------


@transaction.atomic
def deliveries_retry(*, deliveries: QuerySet[Delivery], actor=None) -> int:
    """Send dead letters again (after the receiver was fixed): they wait in the outbox in their
    original order, in a new batch. One audit row per destination. The caller queues the
    sender after the commit (``deliveries_schedule``)."""
    dead = deliveries.filter(status=Delivery.Status.DEAD)
    per_destination = dict(
        dead.order_by()
        .values_list("destination")
        .annotate(n=Count("id"))
        .values_list("destination", "n")
    )
    retried = dead.update(
        status=Delivery.Status.PENDING,
        batch_key="",
        next_attempt_at=timezone.now(),
        updated_at=timezone.now(),
    )
    for destination in Destination.objects.filter(pk__in=per_destination):
        audit_record(
            actor=actor,
            action="delivery.retry",
            obj=destination,
            note=f"{per_destination[destination.pk]} dead letters queued again",
        )
    return retried


def delivery_counts(destination: Destination) -> dict[str, int]:
    """Deliveries per status: delivered, retrying (failed at least once, waiting), waiting,
    skipped, dead."""
    # One pass over the destination's rows (its index), every count a filter of it.
    return Delivery.objects.filter(destination=destination).aggregate(
        **{status: Count("id", filter=Q(status=status)) for status in Delivery.Status.values},
        retrying=Count("id", filter=Q(status=Delivery.Status.PENDING, attempts__gt=0)),
    )


HISTORY_SQL = f"""
    SELECT date_trunc('hour', created_at) AS hour,
        coalesce(sum(items) FILTER (WHERE outcome = 'delivered'), 0),
        coalesce(sum(items) FILTER (WHERE outcome = 'transient'), 0),
        coalesce(sum(items) FILTER (WHERE outcome = 'permanent'), 0),
        percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms),
        percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms),
        percentile_disc(0.5) WITHIN GROUP (ORDER BY waited_ms),
        percentile_disc(0.99) WITHIN GROUP (ORDER BY waited_ms)
    FROM {DeliveryAttempt._meta.db_table}
    WHERE destination_id = %b AND created_at >= %b
    GROUP BY 1 ORDER BY 1
"""  # noqa: S608 - table name from model metadata; values are parameters


def delivery_history(destination: Destination, *, hours: int = 48) -> list[dict]:
    """Per hour of the last ``hours`` (oldest first, hours without a request as zeros): the
    items delivered, failed for now (sent again later) and refused (dead letters), how long
    the receiver took to answer, and how long each request's oldest item had waited since it
    was queued (p50, p99 in ms). From the attempts, kept as long as the deliveries."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    since = now - timedelta(hours=hours - 1)
    found = {hour: figures for hour, *figures in query(HISTORY_SQL, [destination.pk, since])}
    names = (
        "delivered",
        "retried",
        "refused",
        "latency_p50_ms",
        "latency_p99_ms",
        "waited_p50_ms",
        "waited_p99_ms",
    )
    quiet = (0, 0, 0, None, None, None, None)
    history = []
    for step in range(hours):
        hour = since + timedelta(hours=step)
        history.append({"hour": hour, **dict(zip(names, found.get(hour, quiet), strict=True))})
    return history


def destinations_in_trouble() -> list[dict]:
    """Destinations that need a look, for the dashboard: paused, holding dead letters,
    retrying, or an audience sync waiting; with those counts. Never cached."""
    dead = Delivery.objects.filter(destination=OuterRef("pk"), status=Delivery.Status.DEAD)
    retrying = Delivery.objects.filter(
        destination=OuterRef("pk"), status=Delivery.Status.PENDING, attempts__gt=0
    )
    destinations = Destination.objects.annotate(
        dead=Coalesce(Subquery(dead.values("destination").annotate(n=Count("id")).values("n")), 0),
        retrying=Exists(retrying),
    ).filter(
        Q(status=Destination.Status.PAUSED)
        | Q(dead__gt=0)
        | Q(retrying=True)
        | ~Q(sync_waiting_reason="")
    )
    return [
        {
            "destination": destination,
            "dead": destination.dead,
            "retrying": destination.retrying,
            "reason": destination.paused_reason or destination.sync_waiting_reason,
        }
        for destination in destinations.order_by("name")
    ]


# --- Scheduling the sender ------------------------------------------------------------------


def deliveries_schedule() -> None:
    """Start the sender as CDPHUB_DELIVERY says; whoever wrote the outbox never waits for
    it, except in "inline" mode. In "process" mode the processing process looks for them
    itself, and in "off" mode nothing is started."""
    mode = settings.CDPHUB_DELIVERY
    if mode == "celery":
        if _task_throttle.ready():
            # By name: the tasks module imports this one.
            current_app.send_task(SEND_TASK)
    elif mode == "background":
        _sender.wake()
    elif mode == "inline":
        deliveries_send()


SEND_TASK = "cdphub.tasks.send_deliveries_task"
_task_throttle = Throttle()
# Without a broker it looks again every CDPHUB_DELIVERY_POLL_SECONDS while rows wait (retries,
# batches filling up): nothing else would wake it for those.
_sender = BackgroundThread(
    "delivery-sender",
    lambda: deliveries_send(),
    failure="sending deliveries failed; they stay in the outbox",
    waiting=lambda: deliveries_waiting(),
    poll_seconds=lambda: settings.CDPHUB_DELIVERY_POLL_SECONDS,
)
