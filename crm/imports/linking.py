"""Linking the contacts of an applied import to CDP profiles, in the background after the import's
transaction (``crm.tasks.link_import_profiles_task`` runs ``import_job_link_profiles``). What
linking does to profiles, identities and contacts is logged with the import, for revert."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django.utils import timezone

from cdphub.sql import atomic_retried_on_deadlock, keyed_lookups_only
from crm import services
from crm.imports.rows import Progress, batched
from crm.imports.write import change_log
from crm.models import Contact, ImportChange, ImportJob

# Contacts linked to profiles per transaction: linking takes an advisory lock per identifier
# (up to three per contact), and PostgreSQL keeps those in its shared lock table.
LINK_BATCH_SIZE = 500
# Batches linked side by side, each in a thread with its own connection: while one waits for
# PostgreSQL to write its profiles and identities, the other prepares its next batch in Python
# (100,000 contacts on two cores: 16 s one batch at a time, 10 s two side by side; three or
# four gained nothing more).
LINK_THREADS = 2
# Two batches whose contacts share a profile may lock its row in opposite orders; PostgreSQL
# then cancels one, which is linked again.
DEADLOCK_RETRIES = 3

Batch = tuple[list[int], str]  # contact ids, and whether the import created or updated them


def import_job_link_profiles(*, job: ImportJob, progress: Progress | None = None) -> int:
    """Link the contacts an import created or updated to their CDP profiles (creating profiles
    and identities, copying traits), batch by batch in the background: identity work is
    heavier than the import itself, so it does not hold the import's transaction open. What it
    adds to existing profiles and contacts is logged with the import, for revert. Safe to run
    again after an interruption: linking is idempotent."""
    if job.resource != ImportJob.Resource.CONTACTS or job.profiles_linked_at:
        return 0
    batches = list(link_batches(job))
    if connection.in_atomic_block or len(batches) < 2:
        # Inside a caller's transaction other connections cannot see its contacts yet.
        linked = sum(batch_link(job, batch, progress) for batch in batches)
    else:
        linked = batches_link_side_by_side(job, batches, progress)
    job.profiles_linked_at = timezone.now()
    job.save(update_fields=["profiles_linked_at"])
    return linked


def link_batches(job: ImportJob):
    # The contacts of the file's rows; the changes logged by linking itself have no rows.
    sources = ImportChange.objects.filter(job=job, model="crm.contact").exclude(row_numbers=[])
    for change_id, action in sources.values_list("pk", "action"):
        object_ids = ImportChange.objects.values_list("object_ids", flat=True).get(pk=change_id)
        for ids in batched(object_ids, LINK_BATCH_SIZE):
            yield list(ids), action


def batches_link_side_by_side(
    job: ImportJob, batches: list[Batch], progress: Progress | None
) -> int:
    """``LINK_THREADS`` threads share the batches; the first failure stops the others after
    their current batch and is raised."""
    failed = threading.Event()

    def link_share(share: list[Batch]) -> int:
        linked = 0
        try:
            for batch in share:
                if failed.is_set():
                    break
                linked += batch_link(job, batch, progress)
        except BaseException:
            failed.set()
            raise
        finally:
            connection.close()  # this thread's own
        return linked

    threads = min(LINK_THREADS, len(batches))
    with ThreadPoolExecutor(threads, thread_name_prefix="link") as pool:
        shares = [pool.submit(link_share, batches[n::threads]) for n in range(threads)]
        return sum(share.result() for share in shares)


def batch_link(job: ImportJob, batch: Batch, progress: Progress | None) -> int:
    ids, action = batch
    own_transaction = not connection.in_atomic_block  # a caller's keeps its own settings

    def link() -> int:
        if own_transaction:
            keyed_lookups_only()
        contacts = list(Contact.objects.filter(pk__in=ids).only(*services.LINKED_FIELDS))
        links = services.contact_profiles_link(contacts=contacts)
        created = action == ImportChange.Action.CREATED
        profile_links_log(job, links, created_contacts=created)
        return len(contacts)

    linked = atomic_retried_on_deadlock(
        link,
        attempts=DEADLOCK_RETRIES,
        retrying=f"linking import {job.pk} deadlocked; linking the batch again",
    )
    if progress:
        progress(job)
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
