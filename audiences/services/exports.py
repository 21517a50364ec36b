"""Exports to ad platforms: hashed identifiers per destination, minimum size, consent."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.files import File
from django.db.models import QuerySet
from django.utils import timezone

from audiences import hashing
from audiences.models import Audience, AudienceExport, JobStatus, Visitor
from audiences.selectors import (
    ADVERTISING_PURPOSE,
    profiles_allowed_for_advertising,
    visitors_allowed,
)
from cdphub.csv_export import SafeCsvWriter
from cdphub.errors import DomainError
from profiles.models import Identity, Profile
from profiles.resolution.normalize import InvalidIdentifier


class ExportError(DomainError):
    pass


def audience_export(
    *,
    destination: str,
    profiles: Iterable[Profile] | QuerySet[Profile] | None = None,
    visitors: Iterable[Visitor] | QuerySet[Visitor] | None = None,
    segment=None,
    audience: Audience | None = None,
    created_by=None,
) -> AudienceExport:
    """Write a CSV for ``destination`` (google, meta or ids) and record it as an export job.

    Profiles go out only with advertising consent; visitors linked to a profile count as that
    profile. An export reaching fewer people or devices than ``CDPHUB_MIN_AUDIENCE_SIZE`` is
    refused (recorded with status ``refused`` and no file) so that no audience can single out
    a person. Not one transaction on purpose: refusals and failures stay recorded."""
    if destination not in AudienceExport.Destination.values:
        raise ExportError(f"destination {destination!r} is not one of google, meta, ids")
    if (profiles is None) == (visitors is None):
        raise ExportError("give either profiles or visitors")
    job = AudienceExport.objects.create(
        destination=destination, segment=segment, audience=audience, created_by=created_by
    )
    try:
        export_file_write(job, *export_rows(destination, profiles, visitors))
    except Exception as error:
        job.status, job.message, job.finished_at = JobStatus.FAILED, str(error), timezone.now()
        job.save(update_fields=["status", "message", "finished_at"])
        raise
    return job


def export_file_write(job: AudienceExport, header: list[str], rows) -> None:
    """``rows`` yields (subject, row): the minimum size counts subjects (people or devices),
    not rows, so one person with two cookies never counts twice."""
    minimum = settings.CDPHUB_MIN_AUDIENCE_SIZE
    subjects = set()
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as buffer:
        # Uploaded to the platform, which reads the header byte for byte: no byte order mark.
        # Hashes are hex and advertising ids are UUIDs, so neutralising formula cells never
        # changes a valid identifier; it keeps a provider's crafted cookie id inert in Excel.
        writer = SafeCsvWriter(buffer, bom=False)
        writer.writerow(header)
        for subject, row in rows:
            writer.writerow(row)
            job.row_count += 1
            subjects.add(subject)
        job.finished_at = timezone.now()
        if len(subjects) < minimum:
            job.status = JobStatus.REFUSED
            job.message = (
                f"{len(subjects)} people or devices is below the minimum audience size of "
                f"{minimum}: refused so that no export can single out a person."
            )
            job.save(update_fields=["row_count", "finished_at", "status", "message"])
            return
        buffer.seek(0)
        job.file.save(f"{job.destination}-export-{job.pk}.csv", File(buffer), save=False)
    job.status = JobStatus.DONE
    job.save(update_fields=["row_count", "finished_at", "status", "file"])


def export_rows(destination, profiles, visitors) -> tuple[list[str], Iterator[tuple]]:
    if profiles is not None:
        allowed = profiles_allowed_for_advertising(profile_queryset(profiles))
        if destination == "ids":
            return ["id", "id_type"], profile_id_rows(allowed)
        return hashing.person_columns(destination), profile_hashed_rows(destination, allowed)
    # A known person's visitors follow the person's advertising consent.
    members = visitors_allowed(visitor_queryset(visitors), ADVERTISING_PURPOSE)
    if destination == "ids":
        keys = members.order_by("pk").values_list("pk", "profile_id", "key", "key_kind")
        return ["id", "id_type"], (
            (("p", profile) if profile else ("v", pk), [key, kind])
            for pk, profile, key, kind in keys.iterator(chunk_size=5000)
        )
    linked = Profile.objects.filter(pk__in=members.filter(profile__isnull=False).values("profile"))
    devices = members.filter(key_kind=Visitor.KeyKind.DEVICE, profile__isnull=True)
    return hashing.person_columns(destination), chain_rows(
        profile_hashed_rows(destination, linked),
        ((("v", pk), ["", "", key]) for pk, key in devices.order_by("pk").values_list("pk", "key")),
    )


def chain_rows(*iterables):
    for iterable in iterables:
        yield from iterable


def profile_queryset(profiles) -> QuerySet[Profile]:
    if isinstance(profiles, QuerySet):
        return profiles
    return Profile.objects.filter(pk__in=[p.pk for p in profiles])


def visitor_queryset(visitors) -> QuerySet[Visitor]:
    if isinstance(visitors, QuerySet):
        return visitors
    return Visitor.objects.filter(pk__in=[v.pk for v in visitors])


PERSON_KINDS = (Identity.Kind.EMAIL, Identity.Kind.PHONE, Identity.Kind.DEVICE_ID)


def profile_identifiers(profiles: QuerySet[Profile]) -> Iterator[tuple[int, dict[str, str]]]:
    """Per profile, its most recently seen e-mail, phone and device id."""
    identities = (
        Identity.objects.filter(profile__in=profiles.values("pk"), kind__in=PERSON_KINDS)
        .order_by("profile_id", "kind", "-last_seen_at")
        .values_list("profile_id", "kind", "value")
    )
    current, found = None, {}
    for profile_id, kind, value in identities.iterator(chunk_size=5000):
        if profile_id != current:
            if found:
                yield current, found
            current, found = profile_id, {}
        found.setdefault(kind, value)
    if found:
        yield current, found


def profile_hashed_rows(destination: str, profiles: QuerySet[Profile]) -> Iterator[tuple]:
    for profile_id, found in profile_identifiers(profiles):
        row = [
            safe_hash(hashing.hashed_email, destination, found.get(Identity.Kind.EMAIL)),
            safe_hash(hashing.hashed_phone, destination, found.get(Identity.Kind.PHONE)),
            found.get(Identity.Kind.DEVICE_ID, ""),
        ]
        if any(row):
            yield ("p", profile_id), row


def safe_hash(hasher, destination: str, value: str | None) -> str:
    if not value:
        return ""
    try:
        return hasher(destination, value)
    except InvalidIdentifier:
        return ""  # a value the platform could not match anyway


def profile_id_rows(profiles: QuerySet[Profile]) -> Iterator[tuple]:
    kinds = {Identity.Kind.ANONYMOUS_ID: "cookie", Identity.Kind.DEVICE_ID: "device"}
    identities = Identity.objects.filter(
        profile__in=profiles.values("pk"), kind__in=list(kinds)
    ).order_by("pk")
    rows = identities.values_list("profile_id", "kind", "value").iterator(chunk_size=5000)
    for profile_id, kind, value in rows:
        yield ("p", profile_id), [value, kinds[kind]]
