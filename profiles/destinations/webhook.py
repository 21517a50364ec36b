"""The webhook kind: JSON batches POSTed to a URL the receiver owns.

Each request carries
- ``Cdphub-Signature: t=<unix time>,v1=<hex>``: HMAC-SHA256 with the destination's signing
  secret over ``"<t>.<body>"`` (Stripe's scheme): the receiver recomputes it, compares in
  constant time and refuses an old ``t``, so a captured request cannot be replayed later;
- ``Idempotency-Key``: the same for every resend of one batch (at-least-once delivery: a
  receiver that saw the key already can drop the repeat); each event keeps its ``messageId``;
- the destination's custom headers (an API token of the receiver, for example).

The URL passes the outbound guard (``cdphub.outbound``) when it is configured and again for
every request, and the connection goes to the very address that was checked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

import orjson
from django.core.exceptions import ValidationError

from cdphub.pii import MASK
from profiles.destinations.http import json_post, url_validate
from profiles.destinations.kinds import Outgoing, SendResult, config_checked, register

SIGNATURE_HEADER = "Cdphub-Signature"
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "idempotency-key", SIGNATURE_HEADER.lower()}
)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class Webhook:
    code = "webhook"
    label = "Webhook (signed JSON batches)"
    signs = True
    deletes = True
    receives_events = True

    def config_validate(self, config: dict) -> dict:
        config = config_checked(config, {"url", "headers"}, "a url")
        url = url_validate(config.get("url"), "a webhook needs the URL to POST to")
        headers = config.get("headers") or {}
        if not isinstance(headers, dict):
            raise ValidationError({"config": "headers: must be an object of name: value"})
        for name, value in headers.items():
            if not isinstance(value, str) or not name or any(c in name for c in ":\r\n "):
                raise ValidationError({"config": f"headers: {name!r} is not a valid header"})
            if "\r" in value or "\n" in value:
                raise ValidationError({"config": f"headers: the value of {name} has a newline"})
            if name.lower() in RESERVED_HEADERS:
                raise ValidationError({"config": f"headers: {name} is set by cdphub itself"})
        return {"url": url, "headers": headers}

    def config_masked(self, config: dict) -> dict:
        """Header values are the receiver's credentials (an API token): names only."""
        headers = config.get("headers") or {}
        return {**config, "headers": dict.fromkeys(headers, MASK)}

    def send(self, outgoing: Outgoing) -> SendResult:
        body = orjson.dumps(
            {
                "destination": {"id": outgoing.destination_id, "name": outgoing.name},
                "sentAt": datetime.now(UTC).isoformat(),
                "batch": outgoing.items,
            }
        )
        timestamp = int(time.time())
        headers = {
            **(outgoing.config.get("headers") or {}),
            "Content-Type": "application/json",
            "Idempotency-Key": outgoing.idempotency_key,
            SIGNATURE_HEADER: f"t={timestamp},v1={signature(outgoing.secret, timestamp, body)}",
            "User-Agent": "cdphub-webhook/1",
        }
        return json_post(outgoing.config["url"], body, headers)


register(Webhook())
