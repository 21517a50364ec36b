"""The Mailchimp kind: an audience sync kept as a tag (a static segment) of a Mailchimp list,
through the Marketing API 3.0. An e-mail tool's list, so its consent purpose is e-mail
marketing as a rule.

Per batch of a sync (each person's last change counts):
1. who entered is subscribed to the list if new: ``POST /3.0/lists/<list>`` with
   ``{"members": [{"email_address", "status_if_new": "subscribed"}], "update_existing":
   false}``: someone already on it, or who unsubscribed there, stays as they are (an unsubscribe
   in the tool is the person's own word);
2. then the tag follows the segment: ``POST /3.0/lists/<list>/segments/<segment>`` with
   ``{"members_to_add": [...], "members_to_remove": [...]}``, at most 500 each. Who exits loses
   the tag and stays on the list.

An erasure deletes the person from the list for good: ``POST
/3.0/lists/<list>/members/<subscriber hash>/actions/delete-permanent``, the hash being
Mailchimp's (MD5 of the lower-cased address), so the deletion waiting in the outbox holds no
address in clear. The key is sent as HTTP Basic; its data centre (``-us21``) names the API's
host unless ``api_url`` says otherwise. Mailchimp's 429 is retried like any; a refusal (401, a
list or tag that does not exist) is a dead letter with Mailchimp's ``detail``."""

from __future__ import annotations

import base64
import hashlib
import re

import orjson
from django.core.exceptions import ValidationError

from cdphub.pii import MASK
from profiles.destinations.http import json_request, url_validate
from profiles.destinations.kinds import (
    Outgoing,
    SendResult,
    audience_changes,
    config_checked,
    deletion,
    register,
)

MAX_MEMBERS = 500
KEY_PATTERN = re.compile(r"[0-9a-f]{16,64}-(?P<dc>[a-z]{2}\d{1,3})")


def subscriber_hash(email: str) -> str:
    """Mailchimp's id of a list member: the MD5 of the lower-cased address (not a secret)."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def api_url_of(key: str) -> str:
    """The API's address for a key: its data centre (``-us21``) names the host."""
    return f"https://{key.rsplit('-', 1)[1]}.api.mailchimp.com"


def email_of(item: dict) -> str:
    return str(((item.get("context") or {}).get("traits") or {}).get("email") or "").strip()


class Mailchimp:
    code = "mailchimp"
    label = "Mailchimp list tag (Marketing API)"
    signs = False
    deletes = True
    receives_events = False

    def config_validate(self, config: dict) -> dict:
        config = config_checked(
            config, {"api_key", "list_id", "tag_id", "api_url"}, "api_key, list_id and tag_id"
        )
        key = config.get("api_key")
        match = KEY_PATTERN.fullmatch(key) if isinstance(key, str) else None
        if not match:
            raise ValidationError({"config": "api_key: a Mailchimp API key, like <hex>-us21"})
        list_id = config.get("list_id")
        if not isinstance(list_id, str) or not re.fullmatch(r"[0-9a-z]{5,20}", list_id):
            raise ValidationError({"config": "list_id: the audience (list) id, like 9e67587f52"})
        tag_id = str(config.get("tag_id") or "")
        if not tag_id.isdigit():
            raise ValidationError({"config": "tag_id: the numeric id of the tag (static segment)"})
        api_url = url_validate(config.get("api_url") or api_url_of(key), "Mailchimp's address")
        return {
            "api_key": key,
            "list_id": list_id,
            "tag_id": tag_id,
            "api_url": api_url.rstrip("/"),
        }

    def config_masked(self, config: dict) -> dict:
        return {**config, "api_key": MASK}

    def deletion_item(self, subject, request_id: int, destination_id: int) -> dict:
        hashes = sorted({subscriber_hash(e) for e in subject.emails})
        return deletion(request_id, destination_id, subscriberHashes=hashes)

    def send(self, outgoing: Outgoing) -> SendResult:
        entered, exited, deletions = audience_changes(outgoing.items)
        adding = sorted({email for email in map(email_of, entered) if email})
        removing = sorted({email for email in map(email_of, exited) if email})
        config = outgoing.config
        base = f"{config['api_url']}/3.0/lists/{config['list_id']}"
        calls = []
        for start in range(0, max(len(adding), len(removing)), MAX_MEMBERS):
            add, remove = adding[start : start + MAX_MEMBERS], removing[start : start + MAX_MEMBERS]
            if add:
                members = [{"email_address": e, "status_if_new": "subscribed"} for e in add]
                calls.append((base, {"members": members, "update_existing": False}))
            calls.append(
                (
                    f"{base}/segments/{config['tag_id']}",
                    {"members_to_add": add, "members_to_remove": remove},
                )
            )
        for item in deletions:
            for member in item.get("subscriberHashes") or []:
                calls.append((f"{base}/members/{member}/actions/delete-permanent", None))
        result = SendResult(SendResult.DELIVERED, status_code=200)
        for url, body in calls:
            result = self.request(url, body, config["api_key"])
            if result.outcome != SendResult.DELIVERED:
                return result  # the batch is sent again whole: each call can be repeated
        return result

    def request(self, url: str, body: dict | None, key: str) -> SendResult:
        token = base64.b64encode(f"cdphub:{key}".encode()).decode()
        headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": "cdphub-mailchimp/1",
        }
        result = json_request("POST", url, orjson.dumps(body) if body else b"", headers)
        if result.outcome == SendResult.PERMANENT and result.status_code == 404 and body is None:
            # Deleting someone who is not on the list: nothing left to delete.
            return SendResult(SendResult.DELIVERED, status_code=404)
        if result.outcome == SendResult.DELIVERED or not result.response:
            return result
        try:
            detail = orjson.loads(result.response).get("detail")
        except (orjson.JSONDecodeError, AttributeError):
            detail = None
        return result.explained(detail) if detail else result


register(Mailchimp())
