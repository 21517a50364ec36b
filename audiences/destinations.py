"""Ad platforms as destination kinds: an audience sync kept in step with a Meta Custom Audience
through the Marketing API. Registered with the destination kinds (``profiles.destinations``)
from this app, which knows each platform's normalisation and hashing (``audiences.hashing``,
the same as its files use).

Meta, per batch of a sync: every person's last change in the batch counts (entered then exited
is a removal); additions are one ``POST /<version>/<audience id>/users``, removals one
``DELETE`` of the same, each with ``{"payload": {"schema": ["EMAIL_SHA256", "PHONE_SHA256"],
"data": [[<hash or "">, <hash or "">], ...]}, "access_token": ...}``. A person with neither an
e-mail nor a phone cannot be matched and is left out. Meta answers a rate limit or a passing
problem with a 400 whose ``error.code`` says so (4, 17, 32, 613, 80003) or ``is_transient``:
retried later like a 429; any other 400 (an expired token: 190) is a dead letter with Meta's
message. An erasure removes the person's hashed e-mails and phones from the audience."""

from __future__ import annotations

import re

import orjson
from django.core.exceptions import ValidationError

from audiences.hashing import hashed_email, hashed_phone
from cdphub.pii import MASK
from profiles.destinations.http import json_request, url_validate
from profiles.destinations.kinds import (
    Outgoing,
    SendResult,
    audience_changes,
    config_checked,
    register,
)
from profiles.resolution.normalize import InvalidIdentifier

META_SCHEMA = ["EMAIL_SHA256", "PHONE_SHA256"]
META_API_URL = "https://graph.facebook.com"
META_API_VERSION = "v19.0"
# Marketing API error codes of limits and passing trouble: try again later.
META_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80003})


def meta_row(emails: list[str], phones: list[str]) -> list[list[str]]:
    """Rows of the Meta schema for one person: their first e-mail and phone hashed as Meta
    normalises them, then one row per other value; none when nothing can be matched."""
    # Unique: two spellings of one address are one hash.
    email_hashes = list(dict.fromkeys(h for h in (_hashed(hashed_email, v) for v in emails) if h))
    phone_hashes = list(dict.fromkeys(h for h in (_hashed(hashed_phone, v) for v in phones) if h))
    if not email_hashes and not phone_hashes:
        return []
    first = [email_hashes[0] if email_hashes else "", phone_hashes[0] if phone_hashes else ""]
    rest = [[h, ""] for h in email_hashes[1:]] + [["", h] for h in phone_hashes[1:]]
    return [first, *rest]


def _hashed(hasher, value: str) -> str:
    try:
        return hasher("meta", value)
    except InvalidIdentifier:
        return ""


def meta_error(answer: str) -> dict:
    try:
        error = orjson.loads(answer).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


class MetaCustomAudience:
    code = "meta_custom_audience"
    label = "Meta Custom Audience (Marketing API)"
    signs = False
    deletes = True
    receives_events = False

    def config_validate(self, config: dict) -> dict:
        config = config_checked(
            config,
            {"audience_id", "access_token", "api_url", "api_version"},
            "audience_id and access_token",
        )
        audience_id = str(config.get("audience_id") or "")
        if not audience_id.isdigit():
            raise ValidationError({"config": "audience_id: the Custom Audience's numeric id"})
        token = config.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise ValidationError({"config": "access_token: a Marketing API access token"})
        version = config.get("api_version") or META_API_VERSION
        if not isinstance(version, str) or not re.fullmatch(r"v\d+\.\d+", version):
            raise ValidationError({"config": "api_version: like v19.0"})
        api_url = url_validate(config.get("api_url") or META_API_URL, "the Graph API's address")
        return {
            "audience_id": audience_id,
            "access_token": token.strip(),
            "api_url": api_url.rstrip("/"),
            "api_version": version,
        }

    def config_masked(self, config: dict) -> dict:
        return {**config, "access_token": MASK}

    def deletion_item(self, subject, request_id: int, destination_id: int) -> dict:
        """An erasure: the person's every e-mail and phone, hashed the way Meta matches."""
        return {
            "type": "delete",
            "messageId": f"erasure-{request_id}-{destination_id}",
            "erasureRequest": request_id,
            "rows": meta_row(sorted(subject.emails), sorted(subject.phones)),
        }

    def send(self, outgoing: Outgoing) -> SendResult:
        adding, removing = self.changes(outgoing.items)
        result = SendResult(SendResult.DELIVERED, status_code=200)
        for method, rows in (("POST", adding), ("DELETE", removing)):
            if rows:
                result = self.request(method, outgoing, rows)
                if result.outcome != SendResult.DELIVERED:
                    return result  # the batch is sent again whole: adding twice is harmless
        return result

    def changes(self, items: list[dict]) -> tuple[list[list[str]], list[list[str]]]:
        """The rows to add and to remove: each person's last change in the batch, and the
        erasures' removals."""
        entered, exited, deletions = audience_changes(items)
        adding = [row for item in entered for row in self.rows(item)]
        removing = [row for item in exited for row in self.rows(item)]
        removing += [row for item in deletions for row in item.get("rows") or []]
        return adding, removing

    def rows(self, item: dict) -> list[list[str]]:
        traits = (item.get("context") or {}).get("traits") or {}
        return meta_row(
            [traits["email"]] if traits.get("email") else [],
            [traits["phone"]] if traits.get("phone") else [],
        )

    def request(self, method: str, outgoing: Outgoing, rows: list[list[str]]) -> SendResult:
        config = outgoing.config
        url = f"{config['api_url']}/{config['api_version']}/{config['audience_id']}/users"
        body = orjson.dumps(
            {
                "payload": {"schema": META_SCHEMA, "data": rows},
                "access_token": config["access_token"],
            }
        )
        headers = {"Content-Type": "application/json", "User-Agent": "cdphub-meta/1"}
        result = json_request(method, url, body, headers)
        if result.outcome != SendResult.PERMANENT or result.status_code != 400:
            return result
        error = meta_error(result.response)
        message = f"Meta answered 400: {error.get('message') or 'no message'}"
        if error.get("code") in META_TRANSIENT_CODES or error.get("is_transient"):
            return SendResult(
                SendResult.TRANSIENT,
                status_code=400,
                error=f"{message} (code {error.get('code')}: a limit, retried later)",
                response=result.response,
            )
        return SendResult(
            SendResult.PERMANENT,
            status_code=400,
            error=f"{message} (code {error.get('code')})",
            response=result.response,
        )


register(MetaCustomAudience())
