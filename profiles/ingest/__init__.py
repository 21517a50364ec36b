"""Ingest: how a message becomes an event on a profile, in the order it happens.

1. ``endpoints`` and ``urls``: the Segment-compatible ``/v1/*`` endpoints; they only read the
   body and hand it on.
2. ``collect``: find the source by its write key, validate each message, clamp its times, and
   store it in the staging table (``PendingMessage``) or, with its reason, among the rejected
   messages. The sender's answer never waits for anything else.
3. ``processing``: Celery (or the request itself, without a broker) claims staged rows in
   batches, try-locks their identifiers, resolves them to profiles with
   ``profiles.resolution.batch``, writes events and traits, and isolates a message it cannot
   process.
4. ``hooks``: what other apps do with the processed messages in the same transaction (consent
   updates, DMP visitors).
5. ``refresh``: the profiles touched are queued and their computed traits and segment
   memberships refreshed in bulk.
"""
