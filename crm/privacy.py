"""What the CRM holds about a person: the contact, and what was written about them."""

from __future__ import annotations

from django.db.models import Q

from consent import registry
from consent.registry import Subject, delete_rows, scrub_fields
from consent.retention import register_purger
from crm.models import (
    Activity,
    Company,
    Contact,
    ContactMerge,
    DataExport,
    Deal,
    DuplicateCandidate,
    ImportChange,
    ImportJob,
    Pipeline,
    SalesTeam,
    Stage,
    Tag,
    Task,
    Ticket,
)


def _contacts(subject: Subject):
    matching = Q(profile_id__in=subject.profile_ids)
    if subject.emails:
        matching |= Q(email__in=subject.emails)
    if subject.phones:
        matching |= Q(phone__in=subject.phones)
    return Contact.objects.filter(matching)


registry.register(
    Contact,
    find=_contacts,
    erase=delete_rows,
    personal_fields=Contact.PII_FIELDS,
    erase_order=60,
)
registry.register(
    Activity,
    find=lambda subject: Activity.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("subject", "body"),
    erase_order=40,
)
registry.register(
    Task,
    find=lambda subject: Task.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("title", "description"),
    erase_order=40,
)
# Tickets and deals are the company's records too: kept, with the person scrubbed out.
registry.register(
    Ticket,
    find=lambda subject: Ticket.objects.filter(contact__in=_contacts(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("subject", "description")),
    personal_fields=("subject", "description"),
    erase_order=40,
)
registry.register(
    Deal,
    find=lambda subject: Deal.objects.filter(contact__in=_contacts(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("name", "lost_reason")),
    personal_fields=("name",),
    erase_order=40,
)
registry.register_not_personal(Company, "organisations, not people")
registry.register_not_personal(Tag, "labels")
registry.register_not_personal(Pipeline, "sales process configuration")
registry.register_not_personal(Stage, "sales process configuration")
registry.register_not_personal(
    SalesTeam, "sales organisation: a team name and links to staff users"
)


def _contact_ids(subject: Subject) -> list[int]:
    return list(_contacts(subject).values_list("pk", flat=True))


def _import_changes(subject: Subject):
    return ImportChange.objects.filter(
        model="crm.contact", object_ids__overlap=_contact_ids(subject)
    )


def _import_jobs_clear(rows, subject: Subject) -> int:
    # The stored file, its preview and its errors may hold the person: the job's record (who,
    # when, counts) stays, its content goes.
    return rows.update(file_data=b"", preview=[], errors=[])


# Found before the contacts are deleted (erase order 60), so they run first.
registry.register(
    ImportChange,
    find=_import_changes,
    erase=delete_rows,
    personal_fields=("befores",),
    erase_order=30,
)
registry.register(
    ImportJob,
    find=lambda subject: ImportJob.objects.filter(pk__in=_import_changes(subject).values("job_id")),
    erase=_import_jobs_clear,
    personal_fields=("file_data", "preview", "errors"),
    erase_order=31,
    export=False,  # the file itself; what it wrote is exported with the contact
)
registry.register(
    DuplicateCandidate,
    find=lambda subject: DuplicateCandidate.objects.filter(
        Q(contact_a__in=_contacts(subject)) | Q(contact_b__in=_contacts(subject))
    ),
    erase=delete_rows,
    personal_fields=("reasons",),
    erase_order=30,
)
registry.register(
    ContactMerge,
    find=lambda subject: ContactMerge.objects.filter(
        Q(survivor__in=_contacts(subject)) | Q(merged_data__email__in=list(subject.emails) or [""])
    ),
    erase=delete_rows,
    personal_fields=("merged_data",),
    erase_order=30,
)
registry.register_not_personal(DataExport, "who exported which list when; no list content")


def _purge_import_files(cutoff, batch_size: int) -> int:
    """Import files are kept for revert and audit until the retention period ends."""
    old = ImportJob.objects.filter(created_at__lt=cutoff).exclude(file_data=b"")
    purged = 0
    while ids := list(old.values_list("pk", flat=True)[:batch_size]):
        purged += ImportJob.objects.filter(pk__in=ids).update(file_data=b"", preview=[], errors=[])
    return purged


register_purger("import_files", _purge_import_files)
