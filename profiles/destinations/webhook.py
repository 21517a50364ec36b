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
import http.client
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError

from cdphub.outbound import OutboundRefused, outbound_destination, pinned_connection
from cdphub.pii import MASK
from profiles.destinations.kinds import Outgoing, SendResult, register

SIGNATURE_HEADER = "Cdphub-Signature"
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "idempotency-key", SIGNATURE_HEADER.lower()}
)
RESPONSE_KEPT_BYTES = 2000
# Answers worth trying again: the receiver is busy, overloaded or restarting.
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class Webhook:
    code = "webhook"
    label = "Webhook (signed JSON batches)"
    signs = True

    def config_validate(self, config: dict) -> dict:
        if not isinstance(config, dict):
            raise ValidationError({"config": "must be an object with a url"})
        unknown = set(config) - {"url", "headers"}
        if unknown:
            raise ValidationError({"config": f"unknown settings: {', '.join(sorted(unknown))}"})
        url = config.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ValidationError({"config": "url: a webhook needs the URL to POST to"})
        try:
            outbound_destination(url.strip())
        except OutboundRefused as error:
            raise ValidationError({"config": f"url: {error.message}"}) from error
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
        return {"url": url.strip(), "headers": headers}

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
        try:
            target = outbound_destination(outgoing.config["url"])
        except OutboundRefused as error:
            # DNS can answer differently than when the URL was configured; a name that no
            # longer resolves may come back, an internal address is refused for good.
            transient = "cannot be resolved" in error.message
            return SendResult(
                SendResult.TRANSIENT if transient else SendResult.PERMANENT,
                error=f"URL refused: {error.message}",
            )
        timeout = settings.CDPHUB_DELIVERY_TIMEOUT_SECONDS
        connection = pinned_connection(target, timeout)
        where = f"{target.host}:{target.port}"
        try:
            connection.request("POST", target.target, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read(RESPONSE_KEPT_BYTES).decode(errors="replace")
        except TimeoutError:
            return SendResult(
                SendResult.TRANSIENT, error=f"{where} did not answer within {timeout:g} seconds"
            )
        except (OSError, http.client.HTTPException) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            return SendResult(SendResult.TRANSIENT, error=f"could not connect to {where}: {reason}")
        finally:
            connection.close()
        status = response.status
        if 200 <= status < 300:
            return SendResult(SendResult.DELIVERED, status_code=status)
        if status >= 500 or status in TRANSIENT_STATUSES:
            return SendResult(
                SendResult.TRANSIENT,
                status_code=status,
                error=f"{where} answered {status}",
                retry_after=retry_after_seconds(response.getheader("Retry-After")),
                response=answer,
            )
        what = "a redirect, which is not followed" if 300 <= status < 400 else "refused"
        return SendResult(
            SendResult.PERMANENT,
            status_code=status,
            error=f"{where} answered {status} ({what})",
            response=answer,
        )


register(Webhook())
