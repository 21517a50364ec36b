"""One JSON POST to a receiver, as every HTTP kind sends it: through the outbound guard
(``cdphub.outbound``: the URL is checked again for each request and the connection goes to the
very address that was checked), and its answer read as a ``SendResult`` the delivery engine
acts on (delivered; try again later, after ``Retry-After`` if given; refused for good)."""

from __future__ import annotations

import http.client
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.core.exceptions import ValidationError

from cdphub.outbound import OutboundRefused, outbound_destination, pinned_connection
from profiles.destinations.kinds import SendResult

RESPONSE_KEPT_BYTES = 2000
# Answers worth trying again: the receiver is busy, overloaded or restarting.
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def url_validate(url: object, missing: str) -> str:
    """The URL of a config, checked by the outbound guard; ``missing`` says what it is for."""
    if not isinstance(url, str) or not url.strip():
        raise ValidationError({"config": f"url: {missing}"})
    try:
        outbound_destination(url.strip())
    except OutboundRefused as error:
        raise ValidationError({"config": f"url: {error.message}"}) from error
    return url.strip()


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


def json_post(url: str, body: bytes, headers: dict[str, str]) -> SendResult:
    """POST ``body`` to ``url`` and say how it ended; never raises for the receiver's sake."""
    return json_request("POST", url, body, headers)


def json_request(method: str, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
    """Send ``body`` to ``url`` with ``method`` (an API that removes with DELETE) and say how
    it ended; never raises for the receiver's sake."""
    try:
        target = outbound_destination(url)
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
        connection.request(method, target.target, body=body, headers=headers)
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
        # The answer too: an API's next call may need what it created.
        return SendResult(SendResult.DELIVERED, status_code=status, response=answer)
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
