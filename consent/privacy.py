"""What the consent app holds about a person. Consent and request proof is kept (the controller
must be able to show it) but anonymised; the rest goes."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.core.files.storage import default_storage
from django.db.models import Q

from cdphub.models import ApiKey, SavedView
from consent import registry
from consent.hashing import suppression_hash
from consent.models import (
    ConsentRecord,
    ConsentState,
    ConsentText,
    DataSubjectRequest,
    DataSubjectRequestAction,
    ProcessingActivity,
    ProcessingRestriction,
    Purpose,
    RetentionPolicy,
    Suppression,
)
from consent.registry import Subject, delete_rows, scrub_fields
from consent.retention import register_purger


def _identifier_values(subject: Subject) -> set[str]:
    return {*subject.emails, *subject.phones, *subject.user_ids}


def _records(subject: Subject):
    matching = Q(profile_id__in=subject.profile_ids)
    values = _identifier_values(subject)
    if values:
        matching |= Q(identifier_value__in=values)
    return ConsentRecord.objects.filter(matching)


def _anonymise_records(rows, subject: Subject) -> int:
    """Keep the fact (purpose, status, when, how, text version); replace who with the same
    salted hash the suppression list holds, and drop the network proof."""
    pks = list(rows.values_list("pk", flat=True))
    records = ConsentRecord.objects.filter(pk__in=pks)
    pairs = records.exclude(identifier_value="").exclude(identifier_value__startswith="erased:")
    for kind, value in pairs.values_list("identifier_kind", "identifier_value").distinct():
        records.filter(identifier_kind=kind, identifier_value=value).update(
            identifier_value=f"erased:{suppression_hash(kind, value)[:16]}"
        )
    return records.update(ip_address=None, user_agent="", form_url="")


def _requests(subject: Subject):
    matching = Q(pk__in=subject.request_ids) | Q(profile_id__in=subject.profile_ids)
    for field, values in (
        ("subject_email", subject.emails),
        ("subject_phone", subject.phones),
        ("subject_user_id", subject.user_ids),
    ):
        if values:
            matching |= Q(**{f"{field}__in": values})
    return DataSubjectRequest.objects.filter(matching)


def _anonymise_requests(rows, subject: Subject) -> int:
    """The request stays as proof that it was handled (kind, dates, status); who asked and any
    file produced for them go."""
    pks = list(rows.values_list("pk", flat=True))
    requests = DataSubjectRequest.objects.filter(pk__in=pks)
    for name in requests.exclude(result_file="").values_list("result_file", flat=True):
        default_storage.delete(name)
    return requests.update(
        subject_email="",
        subject_phone="",
        subject_user_id="",
        details="",
        corrections={},
        result_file="",
    )


def _log_entries(subject: Subject):
    strings = subject.personal_strings()
    if not strings:
        return LogEntry.objects.none()
    matching = Q()
    for value in strings:
        matching |= Q(object_repr__icontains=value) | Q(change_message__icontains=value)
    return LogEntry.objects.filter(matching)


registry.register(
    ConsentRecord,
    category="consent",
    title="Consent given or withdrawn, with its proof",
    find=_records,
    erase=_anonymise_records,
    personal_fields=("identifier_value", "ip_address", "user_agent", "form_url"),
    erase_order=70,
)
registry.register(
    ConsentState,
    category="consent",
    title="Your consent now, per purpose",
    find=lambda subject: ConsentState.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    erase_order=75,
)
registry.register(
    ProcessingRestriction,
    category="consent",
    title="Restrictions of processing",
    find=lambda subject: ProcessingRestriction.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    erase_order=75,
)
registry.register(
    DataSubjectRequestAction,
    category="requests",
    title="What we did with your requests",
    find=lambda subject: DataSubjectRequestAction.objects.filter(request__in=_requests(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("note",)),
    personal_fields=("note",),
    erase_order=65,
)
registry.register(
    DataSubjectRequest,
    category="requests",
    title="Your requests",
    find=_requests,
    erase=_anonymise_requests,
    personal_fields=("subject_email", "subject_phone", "subject_user_id", "details", "corrections"),
    erase_order=95,  # after everything: earlier steps find rows through the request's identifiers
)
# The admin's change log names the objects edited (a contact's full name, for one).
registry.register(
    LogEntry,
    find=_log_entries,
    erase=lambda rows, subject: scrub_fields(rows, subject, ("object_repr", "change_message")),
    personal_fields=("object_repr", "change_message"),
    export=False,
)
registry.register_not_personal(Suppression, "salted hashes only, the point of the list")
registry.register_not_personal(Purpose, "configuration")
registry.register_not_personal(ConsentText, "configuration")
registry.register_not_personal(RetentionPolicy, "configuration")
registry.register_not_personal(ProcessingActivity, "the register describes processing, not people")
registry.register_not_personal(ApiKey, "an integration's key name")
registry.register_not_personal(SavedView, "how a staff member likes to see a list")


def _purge_request_files(cutoff, batch_size: int) -> int:
    """Access/portability files of requests completed before the cutoff: the person had their
    copy; the request row stays as proof."""
    done = DataSubjectRequest.objects.filter(completed_at__lt=cutoff).exclude(result_file="")
    purged = 0
    while batch := list(done.values_list("pk", "result_file")[:batch_size]):
        for _, name in batch:
            default_storage.delete(name)
        DataSubjectRequest.objects.filter(pk__in=[pk for pk, _ in batch]).update(result_file="")
        purged += len(batch)
    return purged


register_purger("exports", _purge_request_files)
