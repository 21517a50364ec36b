"""Ingest: how a message becomes an event on a profile, in the order it happens.

1. ``endpoints`` and ``urls``: the Segment-compatible ``/v1/*`` endpoints and the short paths
   of the browser and mobile SDKs, CORS with each source's allowed origins, and the settings
   the browser SDKs read first; they only read the body and hand it on.
2. ``limits``: a source's rate limits (messages per second, messages per minute per sender);
   over them the sender gets 429 with Retry-After.
3. ``collect``: find the source by its write key, validate each message, clamp its times, and
   store it in the staging table (``PendingMessage``) or, with its reason, among the rejected
   messages. The sender's answer never waits for anything else.
4. ``plans``: the tracking plan a source follows checks each claimed batch before anything
   else is done with it (flag, omit the offending properties, or block the message).
5. ``processing``: Celery (or the request itself, without a broker) claims staged rows in
   batches, try-locks their identifiers, resolves them to profiles with
   ``profiles.resolution.batch``, writes events and traits, and isolates a message it cannot
   process.
6. ``hooks``: what other apps do with the processed messages in the same transaction (consent
   updates, DMP visitors, the outbox of destinations).
7. ``refresh``: the profiles touched are queued and their computed traits and segment
   memberships refreshed in bulk.
"""
