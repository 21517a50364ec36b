"""Linking the contacts of an applied import to CDP profiles, in the background after the import's
transaction (``crm.tasks.link_import_profiles_task`` runs ``import_job_link_profiles``). What
linking does to profiles, identities and contacts is logged with the import, for revert."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from crm import services
from crm.imports.rows import Progress, batched
from crm.imports.write import change_log
from crm.models import Contact, ImportChange, ImportJob

# Contacts linked to profiles per transaction: linking takes an advisory lock per identifier
# (up to three per contact), and PostgreSQL keeps those in its shared lock table.
LINK_BATCH_SIZE = 500


def import_job_link_profiles(*, job: ImportJob, progress: Progress | None = None) -> int:
    """Link the contacts an import created or updated to their CDP profiles (creating profiles
    and identities, copying traits), batch by batch in the background: identity work is
    heavier than the import itself, so it does not hold the import's transaction open. What it
    adds to existing profiles and contacts is logged with the import, for revert. Safe to run
    again after an interruption: linking is idempotent."""
    if job.resource != ImportJob.Resource.CONTACTS or job.profiles_linked_at:
        return 0
    linked = 0
    # The contacts of the file's rows; the changes logged by linking itself have no rows.
    sources = ImportChange.objects.filter(job=job, model="crm.contact").exclude(row_numbers=[])
    for change_id, action in sources.values_list("pk", "action"):
        object_ids = ImportChange.objects.values_list("object_ids", flat=True).get(pk=change_id)
        for ids in batched(object_ids, LINK_BATCH_SIZE):
            with transaction.atomic():
                contacts = list(Contact.objects.filter(pk__in=ids).select_related(None))
                links = services.contact_profiles_link(contacts=contacts)
                created = action == ImportChange.Action.CREATED
                profile_links_log(job, links, created_contacts=created)
            linked += len(contacts)
            if progress:
                progress(job)
    job.profiles_linked_at = timezone.now()
    job.save(update_fields=["profiles_linked_at"])
    return linked


def profile_links_log(
    job: ImportJob, links: services.ProfileLinks, *, created_contacts: bool
) -> None:
    created = ImportChange.Action.CREATED
    change_log(job, "profiles.profile", created, links.profiles)
    change_log(job, "profiles.identity", created, links.identities)
    change_log(
        job,
        "profiles.profile",
        ImportChange.Action.UPDATED,
        list(links.traits),
        befores=[{"traits": before} for before in links.traits.values()],
    )
    if not created_contacts:  # contacts the import created go away whole on revert
        change_log(
            job,
            "crm.contact",
            ImportChange.Action.UPDATED,
            list(links.relinked),
            befores=[{"profile_id": old} for old in links.relinked.values()],
        )
