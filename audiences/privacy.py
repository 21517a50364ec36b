"""What the DMP holds about a known person: the visitors linked to their profile."""

from __future__ import annotations

import csv
import io

from django.core.files.base import ContentFile

from audiences import hashing
from audiences.models import (
    Audience,
    AudienceExport,
    AudienceMembershipChange,
    AudienceSync,
    Category,
    DataProvider,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)
from consent import registry
from consent.registry import Subject, delete_rows
from consent.retention import delete_in_batches, register_purger
from profiles.resolution.normalize import InvalidIdentifier

registry.register(
    VisitorTraitHit,
    category="advertising",
    title="Interests observed",
    find=lambda subject: VisitorTraitHit.objects.filter(
        visitor__profile_id__in=subject.profile_ids
    ),
    erase=delete_rows,
    erase_order=20,
)
# A visitor linked to an erased person is removed entirely: its cookie id and categories
# describe that person's behaviour.
registry.register(
    Visitor,
    category="advertising",
    title="Browsers and devices",
    find=lambda subject: Visitor.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("key",),
    erase_order=30,
)


def _export_cells(subject: Subject) -> set[str]:
    """What an export file holds of the person: their identifiers hashed the way each ad
    platform wants them, and their cookie and device ids as they are."""
    cells = {
        key
        for (key,) in Visitor.objects.filter(profile_id__in=subject.profile_ids).values_list("key")
    }
    cells |= {value for kind, value in subject.other_identifiers if kind == "device_id"}
    for destination in hashing.DESTINATIONS:
        for hasher, values in (
            (hashing.hashed_email, subject.emails),
            (hashing.hashed_phone, subject.phones),
        ):
            for value in values:
                try:
                    cells.add(hasher(destination, value))
                except InvalidIdentifier:
                    continue
    return cells


def _lines_without(content: str, cells: set[str]) -> tuple[str, int]:
    """The file without the lines holding one of ``cells``, and how many went."""
    kept, removed = [], 0
    for line in content.splitlines(keepends=True):
        if cells.intersection(next(csv.reader(io.StringIO(line)), [])):
            removed += 1
        else:
            kept.append(line)
    return "".join(kept), removed


def _exports(subject: Subject):
    """Export files are short lists of hashes: read, since erasure is rare and no index could
    find a hash inside a file."""
    cells = _export_cells(subject)
    holding = []
    for export in AudienceExport.objects.exclude(file="").only("pk", "file"):
        with export.file.open("rb") as file:
            if _lines_without(file.read().decode("utf-8-sig"), cells)[1]:
                holding.append(export.pk)
    return AudienceExport.objects.filter(pk__in=holding)


def _exports_forget(rows, subject: Subject) -> int:
    """Rewrite each file without the person's lines: the audience stays usable for the rest."""
    cells = _export_cells(subject)
    changed = 0
    for export in rows:
        with export.file.open("rb") as file:
            raw = file.read()
        bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
        content, removed = _lines_without(raw.decode("utf-8-sig"), cells)
        if not removed:
            continue
        name = export.file.name
        export.file.storage.delete(name)
        export.file.save(name.rsplit("/", 1)[-1], ContentFile((bom + content).encode()), save=False)
        export.row_count = max(export.row_count - removed, 0)
        export.save(update_fields=["file", "row_count"])
        changed += 1
    return changed


registry.register(
    AudienceExport,
    find=_exports,
    erase=_exports_forget,
    personal_fields=("file",),
    erase_order=15,  # before the visitors whose keys it looks for
    export=False,  # hashes of identifiers the access file holds in full
)

VISITOR_KEY_KINDS = ("anonymous_id", "device_id")


def _visitor_keys(subject: Subject) -> set[str]:
    """The person's cookie and device ids: their visitors' keys and their own identifiers."""
    keys = set(
        Visitor.objects.filter(profile_id__in=subject.profile_ids).values_list("key", flat=True)
    )
    return keys | {v for kind, v in subject.other_identifiers if kind in VISITOR_KEY_KINDS}


# The history of the person's visitors in audiences (a visitor's key, kept past the visitor).
registry.register(
    AudienceMembershipChange,
    category="advertising",
    title="Advertising audiences joined and left",
    find=lambda subject: AudienceMembershipChange.objects.filter(key__in=_visitor_keys(subject)),
    erase=delete_rows,
    personal_fields=("key",),
    erase_order=25,  # before the visitors whose keys it looks for
)
registry.register_not_personal(AudienceSync, "which destination receives an audience")
registry.register_not_personal(DataProvider, "data suppliers")
registry.register_not_personal(Category, "taxonomy")
registry.register_not_personal(Audience, "an audience's name and rule")
registry.register_not_personal(
    ProviderFileImport, "a provider file's job record; its error lines hold cookie ids, no person"
)


def _purge_visitor_data(cutoff, batch_size: int) -> int:
    """Trait hits and visitors past their own (per provider) expiry, then visitors not seen
    within the policy's retention period, with what hangs off them."""
    from audiences.services import visitor_data_purge

    purged = sum(visitor_data_purge(unseen_since=cutoff, batch_size=batch_size).values())
    # The audiences' history keeps visitors' keys: no longer than the visitors themselves.
    old_changes = AudienceMembershipChange.objects.filter(changed_at__lt=cutoff)
    return purged + delete_in_batches(old_changes, batch_size)


register_purger("visitor_data", _purge_visitor_data)
