"""What the CRM holds about a person: the contact, and what was written about them."""

from __future__ import annotations

from django.db.models import Q

from cdphub.sql import query
from consent import registry
from consent.registry import Subject, delete_rows, scrub_fields
from consent.retention import register_purger
from crm import services
from crm.models import (
    AccountMember,
    AccountSuggestion,
    Activity,
    Company,
    Contact,
    ContactMerge,
    CustomField,
    DataExport,
    Deal,
    DealStageChange,
    DuplicateCandidate,
    ImportChange,
    ImportJob,
    Pipeline,
    SalesTeam,
    Stage,
    Tag,
    Task,
    Ticket,
    WebForm,
    WebFormPost,
)
from profiles.models import Identity


def _contacts(subject: Subject):
    matching = Q(profile_id__in=subject.profile_ids)
    if subject.emails:
        matching |= Q(email__in=subject.emails)
    if subject.phones:
        matching |= Q(phone__in=subject.phones)
    return Contact.objects.filter(matching)


def _contact_names_and_identifiers(profile_ids, emails, phones):
    """The names, e-mails and phones of the person's contacts (found by profile or identifier)."""
    contacts = Contact.objects.filter(
        Q(profile_id__in=profile_ids) | Q(email__in=emails) | Q(phone__in=phones)
    ).values_list("first_name", "last_name", "email", "phone")
    names, found_emails, found_phones = set(), set(), set()
    for first, last, email, phone in contacts:
        names |= {n for n in (first, last, f"{first} {last}".strip()) if n}
        found_emails.add(email)
        found_phones.add(phone)
    return names, found_emails, found_phones


registry.register_describer(_contact_names_and_identifiers)
registry.register(
    Contact,
    category="customer",
    title="Contact record",
    find=_contacts,
    erase=delete_rows,
    personal_fields=Contact.PII_FIELDS,
    erase_order=60,
    rectify=lambda rows, subject, corrections, actor: services.contacts_rectify(
        contacts=rows, corrections=corrections
    ),
)
registry.register(
    Activity,
    category="customer",
    title="Calls, e-mails, meetings and notes",
    find=lambda subject: Activity.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("subject", "body"),
    erase_order=40,
)
# A form post's address is the person's; the form itself is configuration.
registry.register(
    WebFormPost,
    category="customer",
    title="Forms you sent us",
    find=lambda subject: WebFormPost.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("ip_address",),
    erase_order=40,
)
registry.register_not_personal(WebForm, "a form's settings: no person")
registry.register(
    Task,
    category="customer",
    find=lambda subject: Task.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("title", "description"),
    erase_order=40,
)
# Tickets and deals are the company's records too: kept, with the person scrubbed out.
registry.register(
    Ticket,
    category="customer",
    title="Support tickets",
    find=lambda subject: Ticket.objects.filter(contact__in=_contacts(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("subject", "description")),
    personal_fields=("subject", "description"),
    erase_order=40,
)
registry.register(
    Deal,
    category="customer",
    title="Deals (offers and orders in progress)",
    find=lambda subject: Deal.objects.filter(contact__in=_contacts(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("name", "lost_reason")),
    personal_fields=("name",),
    erase_order=40,
)
# Who belongs to which account: the person's, not the company's.
registry.register(
    AccountMember,
    category="customer",
    title="Accounts you belong to",
    find=lambda subject: AccountMember.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    erase_order=20,
)
registry.register_not_personal(Company, "organisations, not people")
registry.register_not_personal(
    AccountSuggestion, "two organisations and a domain; counts of contacts, no person"
)
registry.register_not_personal(Tag, "labels")
registry.register_not_personal(Pipeline, "sales process configuration")
registry.register_not_personal(Stage, "sales process configuration")
registry.register_not_personal(CustomField, "definitions of custom fields, not their values")
registry.register_not_personal(DealStageChange, "stages a deal went through, and when")
registry.register_not_personal(
    SalesTeam, "sales organisation: a team name and links to staff users"
)


def _contact_ids(subject: Subject) -> list[int]:
    return list(_contacts(subject).values_list("pk", flat=True))


def _journal_ids(subject: Subject) -> dict[str, set[int]]:
    """The person's rows in every model an import journals: their contacts, and the profiles
    and identities that linking the imported contacts created or changed."""
    return {
        "crm.contact": set(_contact_ids(subject)),
        "profiles.profile": set(subject.profile_ids),
        "profiles.identity": set(
            Identity.objects.filter(profile_id__in=subject.profile_ids).values_list("pk", flat=True)
        ),
    }


def _import_changes(subject: Subject):
    matching = Q(pk__in=[])
    for model, ids in _journal_ids(subject).items():
        if ids:
            matching |= Q(model=model, object_ids__overlap=sorted(ids))
    return ImportChange.objects.filter(matching)


def _person_positions(change: ImportChange, ids: dict[str, set[int]]) -> list[int]:
    mine = ids.get(change.model, set())
    return [i for i, object_id in enumerate(change.object_ids) if object_id in mine]


def _aligned(values: list | None, positions: list[int]) -> list | None:
    if not values:
        return values
    return [values[i] for i in positions]


def _import_changes_forget(rows, subject: Subject) -> int:
    """Take the person's entries out of each journal row: one row journals a whole batch, and
    the other people in it keep their revert data."""
    ids = _journal_ids(subject)
    changed = 0
    for change in rows:
        mine = set(_person_positions(change, ids))
        kept = [i for i in range(len(change.object_ids)) if i not in mine]
        if not kept:
            change.delete()
        else:
            change.object_ids = _aligned(change.object_ids, kept)
            change.row_numbers = _aligned(change.row_numbers, kept) or []
            change.befores = _aligned(change.befores, kept)
            change.save(update_fields=["object_ids", "row_numbers", "befores"])
        changed += 1
    return changed


def _import_changes_of_person(rows, subject: Subject) -> list[dict]:
    ids = _journal_ids(subject)
    entries = []
    for change in rows:
        for i in _person_positions(change, ids):
            entries.append(
                {
                    "job_id": change.job_id,
                    "model": change.model,
                    "action": change.action,
                    "object_id": change.object_ids[i],
                    "row_number": (change.row_numbers or [None] * (i + 1))[i],
                    "before": change.befores[i] if change.befores else None,
                }
            )
    return entries


IMPORT_JOB_TABLE = ImportJob._meta.db_table


# Jobs quoting the person in their file, preview or error report, whether or not they wrote
# anything (a file refused by its check keeps the errors that quote its cells).
IMPORT_JOBS_QUOTING_SQL = f"""
    SELECT id FROM {IMPORT_JOB_TABLE}
    WHERE preview::text ILIKE ANY(%b::text[]) OR errors::text ILIKE ANY(%b::text[])
        OR encode(file_data, 'escape') ILIKE ANY(%b::text[])
"""  # noqa: S608 - table names from model metadata; values are parameters


def _import_jobs(subject: Subject):
    patterns = [f"%{like_escaped(value)}%" for value in subject.personal_strings()]
    quoting = [row[0] for row in query(IMPORT_JOBS_QUOTING_SQL, [patterns] * 3)] if patterns else []
    return ImportJob.objects.filter(
        Q(pk__in=quoting) | Q(pk__in=_import_changes(subject).values("job_id"))
    )


def like_escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _import_jobs_clear(rows, subject: Subject) -> int:
    # The stored file, its preview and its errors may hold the person: the job's record (who,
    # when, counts) stays, its content goes.
    return rows.update(file_data=b"", preview=[], errors=[])


# Found before the contacts are deleted (erase order 60), so they run first.
registry.register(
    ImportChange,
    category="customer",
    title="Changes made by imports",
    find=_import_changes,
    erase=_import_changes_forget,
    personal_fields=("befores",),
    erase_order=30,
    export_rows=_import_changes_of_person,
)
registry.register(
    ImportJob,
    find=_import_jobs,
    erase=_import_jobs_clear,
    personal_fields=("file_data", "preview", "errors"),
    erase_order=29,  # before the journal loses the person's entries that find the jobs
    export=False,  # the file itself; what it wrote is exported with the contact
)
registry.register(
    DuplicateCandidate,
    category="customer",
    title="Possible duplicate records",
    find=lambda subject: DuplicateCandidate.objects.filter(
        Q(contact_a__in=_contacts(subject)) | Q(contact_b__in=_contacts(subject))
    ),
    erase=delete_rows,
    personal_fields=("reasons",),
    erase_order=30,
)
registry.register(
    ContactMerge,
    category="customer",
    title="Records merged into yours",
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
