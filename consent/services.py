"""Consent: every write goes through here, whether it comes from the admin, the API, an import,
the collection endpoint or a CMP.

A consent record is appended and the current state per profile and purpose is derived from it in
the same transaction; a record that happened before the current state's never overwrites it.

Past 400 lines because every consent write lives here (records, withdrawals, TCF strings,
imports, purposes, retention), each short and sharing the ledger's rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_ipv46_address
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cdphub.errors import DomainError
from cdphub.sql import execute
from consent import changes
from consent.defaults import DEFAULT_PURPOSES, DEFAULT_RETENTION_DAYS, DEFAULT_TEXT_VERSION
from consent.models import (
    ConsentRecord,
    ConsentState,
    ConsentStatus,
    ConsentText,
    Purpose,
    RetentionPolicy,
)
from consent.tcf import TCF_PURPOSE_MAP, InvalidTcfString, tcf_decode
from profiles.models import Identity, Profile
from profiles.resolution.normalize import InvalidIdentifier, normalize_identifier
from profiles.selectors import profile_resolve

# TCPA "express written consent": a signature-equivalent act by the person (a form or checkbox
# they submitted, a keyword they texted, a signed paper form imported with its proof). A call or
# an agent's entry in the admin is not written consent.
EXPRESS_WRITTEN_METHODS = frozenset(
    {
        ConsentRecord.Method.WEB_FORM,
        ConsentRecord.Method.CHECKBOX,
        ConsentRecord.Method.SMS_KEYWORD,
        ConsentRecord.Method.IMPORT,
    }
)
# Clocks of senders run a little fast; further in the future than this is a mistake.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)


class ConsentError(DomainError):
    """Consent input that cannot be recorded; ``field`` names what to fix."""


def purpose_get(purpose: Purpose | str) -> Purpose:
    if isinstance(purpose, Purpose):
        return purpose
    found = Purpose.objects.filter(code=purpose).first()
    if found is None:
        known = ", ".join(Purpose.objects.order_by("code").values_list("code", flat=True))
        raise ConsentError(f"unknown purpose {purpose!r}; known: {known}", field="purpose")
    return found


def consent_text_get(purpose: Purpose, version: ConsentText | str | None) -> ConsentText | None:
    if isinstance(version, ConsentText):
        if version.purpose_id != purpose.pk:
            raise ConsentError(
                f"text version {version} belongs to another purpose than {purpose.code}",
                field="text_version",
            )
        return version
    texts = ConsentText.objects.filter(purpose=purpose)
    if version in (None, ""):
        return texts.filter(published_at__lte=timezone.now()).order_by("-published_at").first()
    found = texts.filter(version=str(version)).first()
    if found is None:
        raise ConsentError(
            f"purpose {purpose.code} has no consent text version {version!r}", field="text_version"
        )
    return found


def _check_sms(purpose: Purpose, status: str, method: str, kind: str, value: str) -> str:
    """Express written consent for one specific phone number; returns the number in E.164."""
    if status != ConsentStatus.GRANTED or not purpose.requires_express_written:
        return value
    if kind != Identity.Kind.PHONE or not value:
        raise ConsentError(
            f"{purpose.code} consent must name the specific phone number it covers "
            "(identifier_kind='phone' and identifier_value)",
            field="identifier_value",
        )
    if method not in EXPRESS_WRITTEN_METHODS:
        allowed = ", ".join(sorted(EXPRESS_WRITTEN_METHODS))
        raise ConsentError(
            f"{purpose.code} needs express written consent: method {method!r} is not written "
            f"(use one of: {allowed})",
            field="method",
        )
    return value


def _normalised_identifier(kind: str, value: str) -> str:
    if not kind and not value:
        return ""
    if not kind or not value:
        raise ConsentError(
            "identifier_kind and identifier_value go together", field="identifier_value"
        )
    try:
        return normalize_identifier(kind, value)
    except InvalidIdentifier as error:
        raise ConsentError(str(error), field="identifier_value") from None


def _check_proof(ip_address: str | None, form_url: str, occurred_at: dt.datetime) -> None:
    if ip_address:
        try:
            validate_ipv46_address(ip_address)
        except ValidationError:
            raise ConsentError(f"{ip_address!r} is not an IP address", field="ip_address") from None
    if form_url:
        try:
            URLValidator()(form_url)
        except ValidationError:
            raise ConsentError(f"{form_url!r} is not a URL", field="form_url") from None
    if occurred_at > timezone.now() + FUTURE_TOLERANCE:
        raise ConsentError(
            f"occurred_at {occurred_at.isoformat()} is in the future", field="occurred_at"
        )


@transaction.atomic
def consent_record(
    *,
    profile: Profile,
    purpose: Purpose | str,
    status: str,
    method: str,
    source: str = "",
    occurred_at: dt.datetime | None = None,
    identifier_kind: str = "",
    identifier_value: str = "",
    text_version: ConsentText | str | None = None,
    ip_address: str | None = None,
    user_agent: str = "",
    form_url: str = "",
    tcf_string: str = "",
    tcf_vendor_list_version: int | None = None,
    recorded_by=None,
) -> ConsentRecord:
    """Append one consent fact with its proof and derive the current state from it."""
    purpose = purpose_get(purpose)
    if status not in ConsentStatus.values:
        raise ConsentError(f"unknown status {status!r}", field="status")
    if method not in ConsentRecord.Method.values:
        raise ConsentError(f"unknown method {method!r}", field="method")
    if status == ConsentStatus.GRANTED and not purpose.is_active:
        raise ConsentError(f"purpose {purpose.code} is no longer active", field="purpose")
    occurred_at = occurred_at or timezone.now()
    _check_proof(ip_address, form_url, occurred_at)
    identifier_value = _normalised_identifier(identifier_kind, identifier_value)
    _check_sms(purpose, status, method, identifier_kind, identifier_value)
    survivor = profile_resolve(profile.pk)
    if survivor is None:
        raise ConsentError(f"profile {profile.pk} does not exist", field="profile")
    # A grant proves which text was shown (the current one unless told); a refusal may name one.
    needs_text = status == ConsentStatus.GRANTED or text_version
    text = consent_text_get(purpose, text_version) if needs_text else None
    record = ConsentRecord.objects.create(
        profile=survivor,
        purpose=purpose,
        status=status,
        method=method,
        source=source,
        occurred_at=occurred_at,
        identifier_kind=identifier_kind,
        identifier_value=identifier_value,
        text_version=text,
        ip_address=ip_address or None,
        user_agent=user_agent,
        form_url=form_url,
        tcf_string=tcf_string,
        tcf_vendor_list_version=tcf_vendor_list_version,
        recorded_by=recorded_by if getattr(recorded_by, "pk", None) else None,
    )
    consent_state_apply(record=record)
    changes.notify(profile_id=record.profile_id, purpose_code=record.purpose.code)
    return record


def consent_state_apply(*, record: ConsentRecord) -> None:
    """Upsert the current state from ``record`` unless a later fact already decided it.

    One ``INSERT ... ON CONFLICT`` statement: two concurrent first grants never collide and an
    older record (an import of history, a late CMP callback) never overwrites a newer one.
    """
    table = ConsentState._meta.db_table
    execute(
        f"""
        INSERT INTO {table} (profile_id, purpose_id, status, record_id, updated_at)
        VALUES (%b, %b, %b, %b, %b)
        ON CONFLICT (profile_id, purpose_id) DO UPDATE
           SET status = EXCLUDED.status,
               record_id = EXCLUDED.record_id,
               updated_at = EXCLUDED.updated_at
         WHERE ({table}.updated_at, {table}.record_id)
               <= (EXCLUDED.updated_at, EXCLUDED.record_id)
        """,  # noqa: S608 - table name from model meta, values are parameters
        [record.profile_id, record.purpose_id, record.status, record.pk, record.occurred_at],
    )


def consent_withdraw(
    *,
    profile: Profile,
    purpose: Purpose | str,
    method: str,
    source: str = "",
    occurred_at: dt.datetime | None = None,
    recorded_by=None,
    **proof,
) -> ConsentRecord:
    """Withdraw consent; any reasonable means counts and it takes effect at once."""
    return consent_record(
        profile=profile,
        purpose=purpose,
        status=ConsentStatus.WITHDRAWN,
        method=method,
        source=source,
        occurred_at=occurred_at,
        recorded_by=recorded_by,
        **proof,
    )


@transaction.atomic
def consent_object(
    *, profile: Profile, method: str, source: str = "", recorded_by=None
) -> list[ConsentRecord]:
    """An objection to direct marketing (GDPR Art. 21) withdraws every marketing purpose."""
    return [
        consent_withdraw(
            profile=profile,
            purpose=purpose,
            method=method,
            source=source or "objection (GDPR Art. 21)",
            recorded_by=recorded_by,
        )
        for purpose in Purpose.objects.filter(is_marketing=True).order_by("code")
    ]


# --- IAB TCF ---------------------------------------------------------------------------------


@transaction.atomic
def consent_record_tcf(
    *,
    profile: Profile,
    tcf_string: str,
    source: str = "",
    occurred_at: dt.datetime | None = None,
    ip_address: str | None = None,
    user_agent: str = "",
    form_url: str = "",
    recorded_by=None,
) -> list[ConsentRecord]:
    """Record the choices of a TCF consent string: for each of our purposes the string covers,
    granted when every TCF purpose it maps to has consent, denied otherwise (a CMP string is the
    person's complete current choice)."""
    try:
        decoded = tcf_decode(tcf_string)
    except InvalidTcfString as error:
        raise ConsentError(str(error), field="tcf_string") from None
    records = []
    for purpose_code, tcf_purposes in TCF_PURPOSE_MAP.items():
        granted = tcf_purposes <= decoded.purpose_consents
        records.append(
            consent_record(
                profile=profile,
                purpose=purpose_code,
                status=ConsentStatus.GRANTED if granted else ConsentStatus.DENIED,
                method=ConsentRecord.Method.CMP,
                source=source or f"CMP {decoded.cmp_id}",
                occurred_at=occurred_at,
                ip_address=ip_address,
                user_agent=user_agent,
                form_url=form_url,
                tcf_string=tcf_string.strip(),
                tcf_vendor_list_version=decoded.vendor_list_version,
                recorded_by=recorded_by,
            )
        )
    return records


# --- Collected events --------------------------------------------------------------------------

CONSENT_EVENT = "Consent Updated"


def consent_record_event(
    *,
    profile: Profile,
    name: str,
    properties: Mapping,
    context: Mapping,
    source: str = "",
    occurred_at: dt.datetime | None = None,
) -> list[ConsentRecord]:
    """Consent from the collection endpoint: a ``Consent Updated`` track event, and/or a TCF
    string in the context (from a CMP). Called by event processing for every message; returns
    the records written (none for an ordinary event).

    ``properties``: ``{"purpose": "email_marketing", "status": "granted"}`` or
    ``{"purposes": {"email_marketing": true, "analytics": false}}``, optional ``text_version``
    and, for SMS, ``phone``. Proof comes from the context: ``ip``, ``userAgent``, ``page.url``.
    """
    proof = _event_proof(context)
    records: list[ConsentRecord] = []
    tcf_string = tcf_from_context(context) or str(properties.get("tcfString") or "")
    with transaction.atomic():
        if tcf_string:
            records += consent_record_tcf(
                profile=profile,
                tcf_string=tcf_string,
                source=source,
                occurred_at=occurred_at,
                **proof,
            )
        if name == CONSENT_EVENT:
            for purpose, status in _event_choices(profile, properties):
                phone = str(properties.get("phone") or "")
                records.append(
                    consent_record(
                        profile=profile,
                        purpose=purpose,
                        status=status,
                        method=ConsentRecord.Method.EVENT
                        if status != ConsentStatus.GRANTED or not phone
                        else ConsentRecord.Method.WEB_FORM,
                        source=source,
                        occurred_at=occurred_at,
                        identifier_kind=Identity.Kind.PHONE if phone else "",
                        identifier_value=phone,
                        text_version=properties.get("text_version") or None,
                        **proof,
                    )
                )
    return records


def _event_choices(profile: Profile, properties: Mapping) -> list[tuple[str, str]]:
    if properties.get("purpose"):
        return [(str(properties["purpose"]), str(properties.get("status") or ""))]
    choices = properties.get("purposes")
    if not isinstance(choices, Mapping) or not choices:
        raise ConsentError(
            "a Consent Updated event needs 'purpose' and 'status', or 'purposes' as "
            "{code: true/false}",
            field="properties",
        )
    granted_now = set(
        ConsentState.objects.filter(profile=profile, status=ConsentStatus.GRANTED).values_list(
            "purpose__code", flat=True
        )
    )
    result = []
    for code, value in choices.items():
        if isinstance(value, str):
            result.append((code, value))
        elif value:
            result.append((code, ConsentStatus.GRANTED))
        else:
            refused = ConsentStatus.WITHDRAWN if code in granted_now else ConsentStatus.DENIED
            result.append((code, refused))
    return result


def _event_proof(context: Mapping) -> dict:
    page = context.get("page") if isinstance(context.get("page"), Mapping) else {}
    return {
        "ip_address": str(context.get("ip") or "") or None,
        "user_agent": str(context.get("userAgent") or ""),
        "form_url": str(page.get("url") or ""),
    }


def tcf_from_context(context: Mapping) -> str:
    consent = context.get("consent") if isinstance(context.get("consent"), Mapping) else {}
    return str(consent.get("tcfString") or context.get("tcf_string") or "")


# --- Spreadsheet import ------------------------------------------------------------------------

IMPORT_IDENTIFIER_COLUMNS = ("email", "phone", "user_id")
IMPORT_PROOF_COLUMNS = ("ip_address", "user_agent", "form_url", "text_version", "source")


@dataclass
class ConsentImportResult:
    created: list[ConsentRecord] = field(default_factory=list)
    # (row number, column, message): every refused row, nothing silently dropped.
    errors: list[tuple[int, str, str]] = field(default_factory=list)


def consent_import_rows(
    *, rows: Iterable[Mapping[str, object]], source: str = "", recorded_by=None, first_row: int = 2
) -> ConsentImportResult:
    """Import consent rows (a spreadsheet with proof columns): one of ``email``/``phone``/
    ``user_id`` finds the profile, then ``purpose``, ``status`` (granted/denied/withdrawn),
    ``occurred_at`` (ISO 8601), optional ``method`` (default import) and proof columns.

    Each row is validated and recorded on its own: a bad row is reported with its number and
    column, and the good rows are kept. ``first_row`` is the spreadsheet row of the first item
    (2 after a header row).
    """
    result = ConsentImportResult()
    for number, row in enumerate(rows, start=first_row):
        clean = {
            str(k).strip().lower(): ("" if v is None else str(v).strip()) for k, v in row.items()
        }
        try:
            with transaction.atomic():
                result.created.append(_import_row(clean, source, recorded_by))
        except ConsentError as error:
            result.errors.append((number, error.field, error.message))
    return result


def _import_row(row: dict[str, str], source: str, recorded_by) -> ConsentRecord:
    profile, kind, value = _import_profile(row)
    occurred_raw = row.get("occurred_at", "")
    occurred_at = parse_datetime(occurred_raw) if occurred_raw else None
    if occurred_raw and occurred_at is None:
        raise ConsentError(f"{occurred_raw!r} is not an ISO 8601 date-time", field="occurred_at")
    if occurred_at is None:
        raise ConsentError("occurred_at is required as proof of when", field="occurred_at")
    if timezone.is_naive(occurred_at):
        occurred_at = timezone.make_aware(occurred_at)
    purpose = purpose_get(row.get("purpose", ""))
    # SMS consent covers the number the row names; other purposes keep the identifier used.
    if purpose.requires_express_written and row.get("phone"):
        kind, value = Identity.Kind.PHONE, row["phone"]
    return consent_record(
        profile=profile,
        purpose=purpose,
        status=row.get("status", "").lower(),
        method=row.get("method") or ConsentRecord.Method.IMPORT,
        source=row.get("source") or source,
        occurred_at=occurred_at,
        identifier_kind=kind,
        identifier_value=value,
        text_version=row.get("text_version") or None,
        ip_address=row.get("ip_address") or None,
        user_agent=row.get("user_agent", ""),
        form_url=row.get("form_url", ""),
        recorded_by=recorded_by,
    )


def _import_profile(row: dict[str, str]) -> tuple[Profile, str, str]:
    for kind in IMPORT_IDENTIFIER_COLUMNS:
        raw = row.get(kind, "")
        if not raw:
            continue
        try:
            value = normalize_identifier(kind, raw)
        except InvalidIdentifier as error:
            raise ConsentError(str(error), field=kind) from None
        identity = Identity.objects.select_related("profile").filter(kind=kind, value=value).first()
        if identity is None:
            raise ConsentError(f"no profile has {kind} {raw!r}", field=kind)
        return profile_resolve(identity.profile_id), kind, value
    raise ConsentError(
        f"one of the columns {', '.join(IMPORT_IDENTIFIER_COLUMNS)} must identify the person",
        field="email",
    )


# --- Defaults ----------------------------------------------------------------------------------


@transaction.atomic
def purposes_ensure_defaults() -> int:
    """Create the default purposes, their first consent texts and the retention policies where
    missing (after a flush, or when an operator deleted one); returns how many were created."""
    created = 0
    for spec in DEFAULT_PURPOSES:
        fields = {key: value for key, value in spec.items() if key not in ("code", "text")}
        purpose, made = Purpose.objects.get_or_create(code=spec["code"], defaults=fields)
        ConsentText.objects.get_or_create(
            purpose=purpose, version=DEFAULT_TEXT_VERSION, defaults={"text": spec["text"]}
        )
        created += made
    for category, days in DEFAULT_RETENTION_DAYS.items():
        _, made = RetentionPolicy.objects.get_or_create(
            category=category, defaults={"retention_days": days}
        )
        created += made
    return created


# --- Retention ---------------------------------------------------------------------------------

RETENTION_BATCH_SIZE = 5_000


def retention_purge(
    *, category: str, batch_size: int = RETENTION_BATCH_SIZE, now: dt.datetime | None = None
) -> int:
    """Purge one data category past its retention period, in batches; records when and how
    much on the policy (what the admin shows). An inactive policy purges nothing."""
    from consent.retention import purgers

    policy = RetentionPolicy.objects.filter(category=category).first()
    if policy is None:
        raise ConsentError(f"no retention policy for category {category!r}", field="category")
    if not policy.is_active:
        return 0
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=policy.retention_days)
    purged = sum(purge(cutoff, batch_size) for purge in purgers(category))
    RetentionPolicy.objects.filter(pk=policy.pk).update(last_run_at=now, last_purged_count=purged)
    return purged


def retention_run_all(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Every active policy, one after the other (the nightly schedule)."""
    categories = RetentionPolicy.objects.filter(is_active=True).values_list("category", flat=True)
    return {category: retention_purge(category=category, now=now) for category in categories}
