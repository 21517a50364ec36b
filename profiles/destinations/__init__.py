"""Destinations: the systems cdphub sends data to, in the order a delivery travels.

1. ``kinds``: the one interface a kind implements (check its config; send a batch and say
   whether it was delivered, failed for now, or was refused for good) and the registry of kinds.
   Adding a kind is one module that registers itself, imported below.
2. ``webhook``: JSON batches POSTed to a URL through the outbound guard, signed with
   HMAC-SHA256 (``Cdphub-Signature: t=<unix>,v1=<hex>``), one ``Idempotency-Key`` per batch.
3. ``services``: create (the signing secret shown once), update, pause, resume, delete; each
   takes the acting user and writes one audit row.
4. ``stream``: the processing hook that writes one outbox row per processed message a
   destination receives, inside the processing transaction, with the resolved profile id.
5. ``selectors``: at send time, which of a batch's people may still receive it (the consent
   selector for the destination's purpose, following merges; erased people are gone).

The outbox, the sender, retries, dead letters and automatic pausing are the shared delivery
engine's (``cdphub.delivery``): every kind gets them without writing any.
"""

from profiles.destinations import webhook  # noqa: F401 (registers the kind)
