"""Ad platforms as destination kinds: an audience sync kept in step with a Meta Custom Audience
(Marketing API) or a Google Customer Match list (Google Ads API). Registered with the
destination kinds (``profiles.destinations``) from this app, which knows each platform's
normalisation and hashing (``audiences.hashing``, the same as its files use).

Meta, per batch of a sync: every member's last change in the batch counts (entered then exited
is a removal); additions are one ``POST /<version>/<audience id>/users``, removals one
``DELETE`` of the same, each with ``{"payload": {"schema": ["EMAIL_SHA256", "PHONE_SHA256"],
"data": [[<hash or "">, <hash or "">], ...]}, "access_token": ...}``; the devices of a DMP
audience's sync go the same way with the schema ``["MADID"]`` (advertising ids as they are,
lower-cased). A person with neither an e-mail nor a phone, or a visitor known by a cookie
only, cannot be matched and is left out. Meta answers a rate limit or a passing
problem with a 400 whose ``error.code`` says so (4, 17, 32, 613, 80003) or ``is_transient``:
retried later like a 429; any other 400 (an expired token: 190) is a dead letter with Meta's
message. An erasure removes the person's hashed e-mails and phones, and their devices, from
the audience."""

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
    advertising_id,
    audience_changes,
    config_checked,
    deletion,
    register,
)
from profiles.resolution.normalize import InvalidIdentifier

META_SCHEMA = ["EMAIL_SHA256", "PHONE_SHA256"]
# Devices (visitors of an audience): mobile advertising ids, sent as they are, lower-cased.
MADID_SCHEMA = ["MADID"]
META_API_URL = "https://graph.facebook.com"
META_API_VERSION = "v19.0"
# Marketing API error codes of limits and passing trouble: try again later.
META_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80003})


def meta_row(emails: list[str], phones: list[str]) -> list[list[str]]:
    """Rows of the Meta schema for one person: their first e-mail and phone hashed as Meta
    normalises them, then one row per other value; none when nothing can be matched."""
    # Unique: two spellings of one address are one hash.
    email_hashes = list(dict.fromkeys(h for v in emails if (h := _hashed(hashed_email, "meta", v))))
    phone_hashes = list(dict.fromkeys(h for v in phones if (h := _hashed(hashed_phone, "meta", v))))
    if not email_hashes and not phone_hashes:
        return []
    first = [email_hashes[0] if email_hashes else "", phone_hashes[0] if phone_hashes else ""]
    rest = [[h, ""] for h in email_hashes[1:]] + [["", h] for h in phone_hashes[1:]]
    return [first, *rest]


def _hashed(hasher, platform: str, value: str) -> str:
    """The value normalised and hashed for the platform; empty if it is no usable value."""
    try:
        return hasher(platform, value)
    except InvalidIdentifier:
        return ""


def devices(items: list[dict]) -> list[str]:
    """The advertising ids of the visitors these items name (a device's, lower-cased)."""
    return list(dict.fromkeys(madid.lower() for item in items if (madid := advertising_id(item))))


def subject_devices(subject) -> list[str]:
    """A person's devices' advertising ids, as an erasure names them to an ad platform."""
    ids = {value.lower() for kind, value in subject.other_identifiers if kind == "device_id"}
    return sorted(ids)


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
        """An erasure: the person's every e-mail and phone, hashed the way Meta matches, and
        their devices' advertising ids."""
        rows = meta_row(sorted(subject.emails), sorted(subject.phones))
        return deletion(request_id, destination_id, rows=rows, madids=subject_devices(subject))

    def send(self, outgoing: Outgoing) -> SendResult:
        entered, exited, deletions = audience_changes(outgoing.items)
        removed_devices = [madid for item in deletions for madid in item.get("madids") or []]
        requests = (
            ("POST", META_SCHEMA, [row for item in entered for row in self.rows(item)]),
            ("POST", MADID_SCHEMA, [[madid] for madid in devices(entered)]),
            (
                "DELETE",
                META_SCHEMA,
                [row for item in exited for row in self.rows(item)]
                + [row for item in deletions for row in item.get("rows") or []],
            ),
            ("DELETE", MADID_SCHEMA, [[m] for m in devices(exited) + removed_devices]),
        )
        result = SendResult(SendResult.DELIVERED, status_code=200)
        for method, schema, rows in requests:
            if rows:
                result = self.request(method, outgoing, schema, rows)
                if result.outcome != SendResult.DELIVERED:
                    return result  # the batch is sent again whole: adding twice is harmless
        return result

    def rows(self, item: dict) -> list[list[str]]:
        traits = (item.get("context") or {}).get("traits") or {}
        return meta_row(
            [traits["email"]] if traits.get("email") else [],
            [traits["phone"]] if traits.get("phone") else [],
        )

    def request(
        self, method: str, outgoing: Outgoing, schema: list[str], rows: list[list[str]]
    ) -> SendResult:
        config = outgoing.config
        url = f"{config['api_url']}/{config['api_version']}/{config['audience_id']}/users"
        body = orjson.dumps(
            {
                "payload": {"schema": schema, "data": rows},
                "access_token": config["access_token"],
            }
        )
        headers = {"Content-Type": "application/json", "User-Agent": "cdphub-meta/1"}
        result = json_request(method, url, body, headers)
        if result.outcome != SendResult.PERMANENT or result.status_code != 400:
            return result
        error = meta_error(result.response)
        detail = f"{error.get('message') or 'no message'} (code {error.get('code')})"
        if error.get("code") in META_TRANSIENT_CODES or error.get("is_transient"):
            return result.explained(f"{detail}: a limit, retried later", SendResult.TRANSIENT)
        return result.explained(detail)


register(MetaCustomAudience())


# --- Google Customer Match ----------------------------------------------------------------------

GOOGLE_API_URL = "https://googleads.googleapis.com"
GOOGLE_API_VERSION = "v17"


def google_identifiers(emails: list[str], phones: list[str]) -> list[dict]:
    """A person's ``userIdentifiers`` as Customer Match matches them: e-mails trimmed and
    lower-cased, phones in E.164 with the ``+``, each SHA-256 hex, each value once."""
    hashed = dict.fromkeys(
        [("hashedEmail", h) for v in emails if (h := _hashed(hashed_email, "google", v))]
        + [("hashedPhoneNumber", h) for v in phones if (h := _hashed(hashed_phone, "google", v))]
    )
    return [{key: value} for key, value in hashed]


class GoogleCustomerMatch:
    """An audience sync kept in step with a Customer Match user list through the Google Ads
    API. Per batch, one offline user data job for the additions and one for the removals:
    ``POST /<version>/customers/<customer>/offlineUserDataJobs:create`` (type
    ``CUSTOMER_MATCH_USER_LIST``, the list, and the EU consent signals ``adUserData`` and
    ``adPersonalization``, GRANTED: only people with the destination's purpose are added),
    then ``:addOperations`` (``create`` or ``remove`` of each person's hashed identifiers,
    partial failure enabled: an identifier Google cannot use does not refuse the batch), then
    ``:run``. Headers: the OAuth ``Authorization: Bearer``, ``developer-token`` and, for a
    manager account, ``login-customer-id``. A 429 (``RESOURCE_EXHAUSTED``) and 5xx are
    retried; other refusals are dead letters with Google's message."""

    code = "google_customer_match"
    label = "Google Customer Match (Google Ads API)"
    signs = False
    deletes = True
    receives_events = False

    def config_validate(self, config: dict) -> dict:
        config = config_checked(
            config,
            {
                "customer_id",
                "user_list_id",
                "developer_token",
                "access_token",
                "login_customer_id",
                "api_url",
                "api_version",
            },
            "customer_id, user_list_id, developer_token and access_token",
        )
        customer = str(config.get("customer_id") or "").replace("-", "")
        if not re.fullmatch(r"\d{10}", customer):
            raise ValidationError({"config": "customer_id: the Google Ads account, 10 digits"})
        user_list = str(config.get("user_list_id") or "")
        if not user_list.isdigit():
            raise ValidationError({"config": "user_list_id: the Customer Match list's id"})
        for name in ("developer_token", "access_token"):
            value = config.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValidationError({"config": f"{name}: required"})
        login = str(config.get("login_customer_id") or "").replace("-", "")
        if login and not re.fullmatch(r"\d{10}", login):
            raise ValidationError({"config": "login_customer_id: a manager account, 10 digits"})
        version = config.get("api_version") or GOOGLE_API_VERSION
        if not isinstance(version, str) or not re.fullmatch(r"v\d+", version):
            raise ValidationError({"config": "api_version: like v17"})
        api_url = url_validate(config.get("api_url") or GOOGLE_API_URL, "the Google Ads API")
        return {
            "customer_id": customer,
            "user_list_id": user_list,
            "developer_token": config["developer_token"].strip(),
            "access_token": config["access_token"].strip(),
            "login_customer_id": login,
            "api_url": api_url.rstrip("/"),
            "api_version": version,
        }

    def config_masked(self, config: dict) -> dict:
        return {**config, "developer_token": MASK, "access_token": MASK}

    def deletion_item(self, subject, request_id: int, destination_id: int) -> dict:
        """An erasure: the person's every e-mail and phone, hashed as Google matches them."""
        identifiers = google_identifiers(sorted(subject.emails), sorted(subject.phones))
        identifiers += [{"mobileId": madid} for madid in subject_devices(subject)]
        return deletion(request_id, destination_id, userIdentifiers=identifiers)

    def send(self, outgoing: Outgoing) -> SendResult:
        entered, exited, deletions = audience_changes(outgoing.items)
        adding = [ids for ids in map(self.identifiers, entered) if ids]
        removing = [ids for ids in map(self.identifiers, exited) if ids]
        removing += [item["userIdentifiers"] for item in deletions if item.get("userIdentifiers")]
        result = SendResult(SendResult.DELIVERED, status_code=200)
        for operation, people in (("create", adding), ("remove", removing)):
            if people:
                result = self.job(outgoing.config, operation, people)
                if result.outcome != SendResult.DELIVERED:
                    return result  # the batch is sent again whole: a job can be repeated
        return result

    def identifiers(self, item: dict) -> list[dict]:
        """A person's hashed identifiers, or a visitor's device (its ``mobileId``, for a list
        of mobile advertising ids; a visitor known by a cookie only is left out)."""
        if madid := advertising_id(item):
            return [{"mobileId": madid.lower()}]
        traits = (item.get("context") or {}).get("traits") or {}
        return google_identifiers(
            [traits["email"]] if traits.get("email") else [],
            [traits["phone"]] if traits.get("phone") else [],
        )

    def job(self, config: dict, operation: str, people: list[list[dict]]) -> SendResult:
        base = f"{config['api_url']}/{config['api_version']}/customers/{config['customer_id']}"
        user_list = f"customers/{config['customer_id']}/userLists/{config['user_list_id']}"
        created, name = self.call(
            config,
            f"{base}/offlineUserDataJobs:create",
            {
                "job": {
                    "type": "CUSTOMER_MATCH_USER_LIST",
                    "customerMatchUserListMetadata": {
                        "userList": user_list,
                        "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
                    },
                }
            },
        )
        if created.outcome != SendResult.DELIVERED:
            return created
        if not re.fullmatch(r"customers/\d+/offlineUserDataJobs/\d+", name):
            return SendResult(
                SendResult.TRANSIENT, status_code=created.status_code, error="no job was created"
            )
        job = f"{config['api_url']}/{config['api_version']}/{name}"
        operations = [{operation: {"userIdentifiers": identifiers}} for identifiers in people]
        added, _ = self.call(
            config,
            f"{job}:addOperations",
            {"operations": operations, "enablePartialFailure": True},
        )
        if added.outcome != SendResult.DELIVERED:
            return added
        ran, _ = self.call(config, f"{job}:run", {})
        return ran

    def call(self, config: dict, url: str, body: dict) -> tuple[SendResult, str]:
        """One request; its outcome, and the resource name it answered (a job's)."""
        headers = {
            "Authorization": f"Bearer {config['access_token']}",
            "developer-token": config["developer_token"],
            "Content-Type": "application/json",
            "User-Agent": "cdphub-google-ads/1",
        }
        if config.get("login_customer_id"):
            headers["login-customer-id"] = config["login_customer_id"]
        result = json_request("POST", url, orjson.dumps(body), headers)
        if result.outcome == SendResult.DELIVERED:
            return result, google_resource(result.response)
        message = google_message(result.response)
        return (result.explained(message) if message else result), ""


def google_resource(answer: str) -> str:
    try:
        return str(orjson.loads(answer).get("resourceName") or "")
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def google_message(answer: str) -> str:
    try:
        error = orjson.loads(answer).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return str(error.get("message") or "") if isinstance(error, dict) else ""


register(GoogleCustomerMatch())
