"""The refresh that follows new events: computed traits, then segment memberships, of the
profiles the events touched.

Processing does not refresh each batch's profiles at once: it queues them (``ProfileRefresh``)
in its own transaction, and ``queued_profiles_refresh`` takes thousands at a time, whenever the
staging table runs empty and at least every CDPHUB_PROFILE_REFRESH_SECONDS during a backlog. A
returning visitor with a hundred messages waiting is refreshed once, and the recomputation
(which reads every event of each profile) runs per profile rather than per message. Several
workers refresh side by side: claims skip rows another worker holds, and a claim left by a
crashed worker is taken again after ``STALE_CLAIM``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from cdphub.sql import is_deadlock, query
from profiles.models import ProfileRefresh

logger = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=10)
REFRESH_TABLE = ProfileRefresh._meta.db_table

# New events for a profile whose refresh is running clear its claim: the row then survives
# that refresh's delete and the profile is refreshed again with the new events.
QUEUE_SQL = f"""
    INSERT INTO {REFRESH_TABLE} (profile_id, queued_at, claimed_at)
    SELECT id, now(), NULL FROM unnest(%b::bigint[]) AS u(id)
    ON CONFLICT (profile_id) DO UPDATE SET claimed_at = NULL
    WHERE {REFRESH_TABLE}.claimed_at IS NOT NULL
"""  # noqa: S608 - table names from model metadata; values are parameters
CLAIM_SQL = f"""
    UPDATE {REFRESH_TABLE} r SET claimed_at = %b
    WHERE r.profile_id IN (
        SELECT profile_id FROM {REFRESH_TABLE}
        WHERE claimed_at IS NULL OR claimed_at < %b
        LIMIT %b
        FOR UPDATE SKIP LOCKED
    )
    RETURNING r.profile_id
"""  # noqa: S608 - table names from model metadata; values are parameters
# A claim's rows are locked in id order (the order processing queues them in) before they are
# deleted or released: in whatever order the plan visits them, two transactions could deadlock.
DONE_SQL = f"""
    DELETE FROM {REFRESH_TABLE} WHERE profile_id IN (
        SELECT profile_id FROM {REFRESH_TABLE}
        WHERE profile_id = ANY(%b::bigint[]) AND claimed_at = %b
        ORDER BY profile_id FOR UPDATE
    )
"""  # noqa: S608 - table names from model metadata; values are parameters
RELEASE_SQL = f"""
    UPDATE {REFRESH_TABLE} SET claimed_at = NULL WHERE profile_id IN (
        SELECT profile_id FROM {REFRESH_TABLE}
        WHERE profile_id = ANY(%b::bigint[]) AND claimed_at = %b
        ORDER BY profile_id FOR UPDATE
    )
"""  # noqa: S608 - table names from model metadata; values are parameters
MAX_DEADLOCKS = 3


def profiles_refresh_queue(*, profile_ids: Iterable[int]) -> None:
    """Queue these profiles for a refresh (in the caller's transaction: the queue entry
    commits with the events that caused it). Ids sorted: concurrent callers lock queue rows
    in the same order."""
    ids = sorted({int(pk) for pk in profile_ids if pk})
    if ids:
        query(QUEUE_SQL, [ids], fetch=False)


def queued_profiles_refresh(*, batch_size: int | None = None) -> int:
    """Refresh every queued profile, ``batch_size`` at a time; returns how many were refreshed.
    A claim commits before the refresh starts, so the refresh never holds queue rows that
    processing wants to write (no lock cycle between them)."""
    from profiles.segments.membership import profile_activity_refresh

    batch_size = batch_size or settings.CDPHUB_PROFILE_REFRESH_BATCH
    refreshed = deadlocks = 0
    while True:
        claimed_at = timezone.now()
        with transaction.atomic():
            rows = query(CLAIM_SQL, [claimed_at, claimed_at - STALE_CLAIM, batch_size])
        if not rows:
            return refreshed
        ids = sorted(row[0] for row in rows)
        try:
            profile_activity_refresh(profile_ids=ids)
        except OperationalError as exc:
            # A processing batch merging profiles can still cross the refresh's locks: the
            # claim is given back for the next pass instead of stopping the processing loop.
            if not is_deadlock(exc) or deadlocks == MAX_DEADLOCKS:
                raise
            deadlocks += 1
            logger.warning("profile refresh deadlocked with processing; giving the claim back")
            query(RELEASE_SQL, [ids, claimed_at], fetch=False)
            continue
        with transaction.atomic():
            query(DONE_SQL, [ids, claimed_at], fetch=False)
        refreshed += len(ids)
