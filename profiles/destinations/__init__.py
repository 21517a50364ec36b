"""Destinations: the systems cdphub sends data to, in the order a delivery travels.

1. ``kinds``: the one interface a kind implements (check its config; send a batch and say
   whether it was delivered, failed for now, or was refused for good) and the registry of kinds.
   Adding a kind is one module that registers itself, imported below.
2. The kinds, each one module: ``webhook`` (JSON batches signed with HMAC-SHA256,
   ``Cdphub-Signature: t=<unix>,v1=<hex>``, one ``Idempotency-Key`` per batch) and
   ``segment_forward`` (the events as collected, to any ``/v1/batch`` with a write key),
   ``mailchimp`` (an audience sync as a tag of a Mailchimp list), ``warehouse`` (events,
   profiles and identities copied into another PostgreSQL database); the HTTP ones send
   through ``http``,
   one JSON request through the outbound guard, its answer classified. The ad platforms' kinds
   are the DMP's (``audiences.destinations``), registered the same way.
3. ``services``: create (the signing secret shown once), update, pause, resume, delete; each
   takes the acting user and writes one audit row.
4. ``stream``: the processing hook that writes one outbox row per processed message a
   destination receives, inside the processing transaction, with the resolved profile id.
5. ``audience``: audience syncs, a destination with a segment: its members loaded once, then
   who enters and exits (from the membership history, each change once), and the members whose
   consent to the destination's purpose changes.
6. ``selectors``: at send time, which of a batch's people may still receive it (the consent
   selector for the destination's purpose, following merges; erased people are gone).

The outbox, the sender, retries, dead letters and automatic pausing are the shared delivery
engine's (``cdphub.delivery``): every kind gets them without writing any.
"""

from profiles.destinations import (  # noqa: F401 (register the kinds)
    mailchimp,
    segment_forward,
    warehouse,
    webhook,
)
