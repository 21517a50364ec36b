"""Segment exports: the members allowed for a purpose, as a CSV for a spreadsheet or as JSON
batches to a webhook (recorded, run in the background, every batch through the outbound guard)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator

from django.utils import timezone

from cdphub.csv_export import SafeDictWriter
from cdphub.outbound import OutboundFailed, OutboundRefused, outbound_destination, outbound_post
from cdphub.replicas import replica_reads
from profiles.models import Identity, Segment, SegmentExport
from profiles.segments.membership import members_for_purpose

logger = logging.getLogger(__name__)

EXPORT_FIELDS = ("profile_id", "email", "user_id", "phone")
# Besides the identifiers, an export may carry given traits (``trait.<key>``) and computed ones
# (``computed.<key>``), top-level keys only.
TRAIT, COMPUTED = "trait.", "computed."
MAX_EXPORT_FIELDS = 50


class ExportFieldError(ValueError):
    """A field an export cannot carry; the message names it."""


def export_fields_check(fields: Iterable[str]) -> list[str]:
    """The export's columns, the profile id first, each once; raises ``ExportFieldError``."""
    checked = ["profile_id"]
    for name in fields:
        if not isinstance(name, str):
            raise ExportFieldError(f"a field is a string, not {name!r}")
        key = name.removeprefix(TRAIT).removeprefix(COMPUTED)
        known = name in EXPORT_FIELDS or (
            name.startswith((TRAIT, COMPUTED)) and key and "." not in key and len(key) <= 100
        )
        if not known:
            raise ExportFieldError(
                f"unknown field {name!r}: expected {', '.join(EXPORT_FIELDS)}, trait.<key> or "
                "computed.<key>"
            )
        if name not in checked:
            checked.append(name)
    if len(checked) > MAX_EXPORT_FIELDS:
        raise ExportFieldError(f"an export carries at most {MAX_EXPORT_FIELDS} fields")
    return checked


def export_rows(
    segment: Segment, purpose_code: str, fields: Iterable[str] = EXPORT_FIELDS
) -> Iterator[dict]:
    """One row per member allowed for the purpose, with the chosen ``fields`` (by default the
    identifiers a channel needs)."""
    fields = export_fields_check(fields)
    with_traits = any(name.startswith((TRAIT, COMPUTED)) for name in fields)
    profiles = members_for_purpose(segment, purpose_code).order_by("pk")
    columns = ("pk", "traits", "computed_traits") if with_traits else ("pk",)
    for chunk in chunked(profiles.values_list(*columns).iterator(chunk_size=2000), 2000):
        identifiers = channel_identifiers(row[0] for row in chunk)
        for row in chunk:
            values = {"profile_id": row[0], **identifiers[row[0]]}
            if with_traits:
                values.update({TRAIT + k: v for k, v in (row[1] or {}).items()})
                values.update({COMPUTED + k: v for k, v in (row[2] or {}).items()})
            # A member without a value has no key (an empty cell in a CSV).
            yield {name: values[name] for name in fields if name in values}


def export_counts(
    segment: Segment, purposes: Iterable[tuple[str, str]]
) -> list[tuple[str, dict[str, int]]]:
    """Per purpose (code, name): how many members the segment has, how many the purpose
    allows, how many are left out for missing consent (or a restriction of processing)."""
    members = segment.memberships.count()
    counts = []
    for code, name in purposes:
        allowed = members_for_purpose(segment, code).count()
        counts.append(
            (name, {"members": members, "allowed": allowed, "left_out": members - allowed})
        )
    return counts


def cell(value):
    """A CSV cell: a list or object as JSON, anything else as it is."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def channel_identifiers(profile_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """Per profile, what a channel matches people on: its user id, e-mail and phone (the
    most recently seen of each kind), in one query."""
    identifiers: dict[int, dict[str, str]] = {pk: {} for pk in profile_ids}
    rows = Identity.objects.filter(
        profile_id__in=list(identifiers), kind__in=("email", "user_id", "phone")
    ).order_by("profile_id", "-last_seen_at")
    for profile_id, kind, value in rows.values_list("profile_id", "kind", "value"):
        identifiers[profile_id].setdefault(kind, value)
    return identifiers


def chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def segment_export_csv(
    *, segment: Segment, purpose_code: str, fields: Iterable[str] = EXPORT_FIELDS
) -> Iterator[str]:
    """CSV lines (header first) of the members that granted the purpose, for a spreadsheet.
    The fields are checked before anything is read (``ExportFieldError``)."""
    columns = export_fields_check(fields)
    return _csv_lines(segment, purpose_code, columns)


def _csv_lines(segment: Segment, purpose_code: str, columns: list[str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = SafeDictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    for row in export_rows(segment, purpose_code, columns):
        writer.writerow({key: cell(value) for key, value in row.items()})
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def segment_export_webhook(
    *,
    segment: Segment,
    purpose_code: str,
    url: str,
    progress: Callable[[int], object] | None = None,
) -> int:
    """POST the members allowed for the purpose to ``url`` as JSON batches; returns the
    number of profiles sent (``progress`` hears it after each batch). Every batch goes through
    the outbound guard (``cdphub.outbound``): raises ``OutboundRefused`` for a URL reaching an
    internal address and ``OutboundFailed`` when the receiver cannot be reached or answers an
    error."""
    outbound_destination(url)  # refused before the members are read
    sent = 0
    for batch in chunked(export_rows(segment, purpose_code), 500):
        body = json.dumps(
            {
                "segment": {"id": segment.pk, "name": segment.name},
                "purpose": purpose_code,
                "profiles": batch,
            }
        ).encode()
        outbound_post(url, body, headers={"Content-Type": "application/json"})
        sent += len(batch)
        if progress is not None:
            progress(sent)
    return sent


def segment_export_request(
    *, segment: Segment, purpose_code: str, url: str, user=None
) -> SegmentExport:
    """Record a webhook export to run in the background. The URL is checked now, so that a
    refused one is an error for the person asking (``OutboundRefused``, naming the reason),
    and again when the export runs: DNS may answer differently by then."""
    outbound_destination(url)
    return SegmentExport.objects.create(
        segment=segment, purpose_code=purpose_code, url=url, created_by=user
    )


def segment_export_run(*, export: SegmentExport) -> SegmentExport:
    """Send a requested webhook export and record how it ended. Never raises for the
    receiver's sake: a refusal, a connection error or an error answer is recorded on the
    export (and shown among the requester's jobs), so that without a broker, where this runs
    inside the request, the answer never depends on what the URL's host did."""
    claimed = SegmentExport.objects.filter(pk=export.pk, status=SegmentExport.Status.QUEUED)
    if not claimed.update(status=SegmentExport.Status.SENDING):
        return export  # already run (a task delivered twice)
    status, message = SegmentExport.Status.DONE, ""

    def progress(sent: int) -> None:
        SegmentExport.objects.filter(pk=export.pk).update(sent=sent)

    try:
        # The members may come from a replica: the export's own writes are its progress.
        with replica_reads(pin_on_write=False):
            segment_export_webhook(
                segment=export.segment,
                purpose_code=export.purpose_code,
                url=export.url,
                progress=progress,
            )
    except (OutboundRefused, OutboundFailed) as error:
        status, message = SegmentExport.Status.FAILED, str(error)
    except Exception:
        logger.exception("webhook export %s failed", export.pk)
        status, message = SegmentExport.Status.FAILED, "internal error: see the server log"
    SegmentExport.objects.filter(pk=export.pk).update(
        status=status, message=message[:500], finished_at=timezone.now()
    )
    export.refresh_from_db()
    return export
