"""The Segment-compatible forward: collected events sent on, as they were collected, to any
endpoint of Segment's HTTP Tracking API (``<url>/v1/batch``): another cdphub, a RudderStack
data plane, Segment itself.

The write key of the receiving source goes as HTTP Basic user name, as the server SDKs send it.
The receiver de-duplicates by each message's ``messageId``, which is kept, so a batch sent again
(at-least-once delivery) stores nothing twice. cdphub's own ``profileId`` is not forwarded: the
receiver resolves identities itself.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
from django.core.exceptions import ValidationError

from cdphub.pii import MASK
from profiles.destinations.http import json_post, url_validate
from profiles.destinations.kinds import Outgoing, SendResult, config_checked, register


class SegmentForward:
    code = "segment_forward"
    label = "Segment-compatible forward (/v1/batch: cdphub, RudderStack, Segment)"
    signs = False
    # The tracking API has no deletion: a person is deleted there through its own API.
    deletes = False
    receives_events = True

    def config_validate(self, config: dict) -> dict:
        config = config_checked(config, {"url", "write_key"}, "a url and a write_key")
        url = url_validate(
            config.get("url"), "the receiver's address, e.g. https://api.segment.io"
        ).rstrip("/")
        if url.endswith("/v1/batch"):
            url = url.removesuffix("/v1/batch")
        write_key = config.get("write_key")
        if not isinstance(write_key, str) or not write_key.strip():
            raise ValidationError({"config": "write_key: the receiving source's write key"})
        return {"url": url, "write_key": write_key.strip()}

    def config_masked(self, config: dict) -> dict:
        """The write key is the receiver's credential."""
        return {**config, "write_key": MASK}

    def send(self, outgoing: Outgoing) -> SendResult:
        batch = [
            {key: value for key, value in item.items() if key != "profileId"}
            for item in outgoing.items
        ]
        body = orjson.dumps({"batch": batch, "sentAt": datetime.now(UTC).isoformat()})
        credentials = base64.b64encode(f"{outgoing.config['write_key']}:".encode()).decode()
        headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/json",
            "User-Agent": "cdphub-forward/1",
        }
        return json_post(f"{outgoing.config['url']}/v1/batch", body, headers)


register(SegmentForward())
