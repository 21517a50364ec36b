"""Reverting an applied import from its change journal: created rows deleted, updated rows given
their previous values back, and what profile linking did undone."""

from __future__ import annotations

from collections.abc import Iterator

from django.apps import apps
from django.db import transaction
from django.db.models import Exists, Func, IntegerField, OuterRef, QuerySet, Sum
from django.utils import timezone

from cdphub.bulk import objects_update
from crm.importfiles import ImportRefused
from crm.imports.jobs import import_job_check_actor
from crm.models import Company, Contact, DealStageChange, ImportChange, ImportJob, Tag
from crm.resources import SPECS
from crm.selectors import visible_to
from profiles.models import Event, Profile
from profiles.services import (
    identities_delete,
    identities_remove,
    profile_traits_merge_undo,
    profiles_delete,
)


class Cardinality(Func):
    function = "cardinality"
    output_field = IntegerField()


def created_batches(changes, label: str) -> Iterator[list[int]]:
    """The ids of the rows of one model the import created, a logged batch at a time."""
    created = changes.filter(model=label, action=ImportChange.Action.CREATED)
    for change_id in created.values_list("pk", flat=True):
        yield ImportChange.objects.values_list("object_ids", flat=True).get(pk=change_id)


def import_job_revert_preview(job: ImportJob) -> list[str]:
    """What reverting the import would undo, in words, counted from its change journal (one
    line per model and action: "delete 120 contacts it created")."""
    counts = (
        job.changes.order_by()
        .values("model", "action")
        .annotate(rows=Sum(Cardinality("object_ids")))
        .order_by("model", "action")
    )
    lines = []
    for row in counts:
        if not row["rows"]:
            continue
        model = apps.get_model(row["model"])
        noun = model._meta.verbose_name if row["rows"] == 1 else model._meta.verbose_name_plural
        if row["action"] == ImportChange.Action.CREATED:
            lines.append(f"delete {row['rows']} {noun} it created")
        else:
            lines.append(f"give {row['rows']} {noun} it {row['action']} their previous values")
    return lines


@transaction.atomic
def import_job_revert(*, job: ImportJob, actor=None) -> dict[str, int]:
    """Undo an applied import: created rows deleted (profiles and tags only when nothing else
    uses them), updated rows given their previous values back, the tags it added to existing
    records removed, and what profile linking did to existing profiles and contacts undone
    (identities, traits, links). Changes made to those rows after the import are overwritten
    by the restore. CRM records out of the ``actor``'s sight (moved to another sales team
    since) are left as they are, and counted."""
    import_job_check_actor(job=job, actor=actor)
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if job.status != ImportJob.Status.APPLIED:
        raise ImportRefused(f"Only applied imports can be reverted; this one is {job.status}.")

    def in_sight(queryset: QuerySet) -> QuerySet:
        return queryset if actor is None else visible_to(actor, queryset)

    changes = ImportChange.objects.filter(job=job)
    updated = changes.filter(action=ImportChange.Action.UPDATED)
    restored, out_of_sight = revert_updates(updated.filter(model__in=SPECS_BY_LABEL), in_sight)
    profile_traits_restore(updated.filter(model="profiles.profile"))
    for model in (Contact, Company):
        through = model.tags.through
        for ids in created_batches(changes, through._meta.label_lower):
            through.objects.filter(pk__in=ids).delete()
    for ids in created_batches(changes, "crm.dealstagechange"):
        DealStageChange.objects.filter(pk__in=ids).delete()
    deleted = 0
    for label in ("crm.activity", "crm.deal", "crm.contact", "crm.company"):
        model = SPECS_BY_LABEL[label]
        for ids in created_batches(changes, label):
            ids = list(in_sight(model.objects.filter(pk__in=ids)).values_list("pk", flat=True))
            if label == "crm.contact":  # gone with the contact, even from a profile that stays
                identities_remove([("crm_contact", str(pk)) for pk in ids])
            deleted += model.objects.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
    kept = created_profiles_delete(changes)
    for ids in created_batches(changes, "profiles.identity"):
        identities_delete(identity_ids=ids, keep_profiles=kept)
    for ids in created_batches(changes, "crm.tag"):
        Tag.objects.filter(pk__in=ids, contacts=None, companies=None).delete()
    job.status, job.reverted_at = ImportJob.Status.REVERTED, timezone.now()
    job.message = f"Reverted: {deleted} created row(s) deleted, {restored} row(s) restored."
    if out_of_sight:
        job.message += f" {out_of_sight} record(s) out of your sight were left as they are."
    job.save()
    return {"deleted": deleted, "restored": restored, "out_of_sight": out_of_sight}


def created_profiles_delete(changes) -> set[int]:
    """Delete the profiles the import created that nothing else uses; returns those kept
    (events arrived or a contact links to them since): they stay whole, identities too."""
    kept = set()
    for ids in created_batches(changes, "profiles.profile"):
        profiles = Profile.objects.filter(pk__in=ids)
        used = profiles.filter(
            Exists(Event.objects.filter(profile=OuterRef("pk")))
            | Exists(Contact.objects.filter(profile=OuterRef("pk")))
        )
        kept.update(used.values_list("pk", flat=True))
        profiles_delete(profile_ids=[pk for pk in ids if pk not in kept])
    return kept


def profile_traits_restore(changes) -> None:
    """The traits linking replaced get their previous values back and those it added go, the
    latest batch first: a profile two batches changed ends as it was before the first."""
    for change_id in changes.order_by("-pk").values_list("pk", flat=True):
        change = ImportChange.objects.get(pk=change_id)
        profile_traits_merge_undo(
            profile_ids=change.object_ids, befores=[before["traits"] for before in change.befores]
        )


def revert_updates(changes, in_sight) -> tuple[int, int]:
    """Previous values back, a logged batch at a time; returns how many rows of the file
    were restored (linking's own changes to those rows are restored too, not counted) and how
    many were left because they are out of sight (``in_sight`` filters a queryset)."""
    restored = out_of_sight = 0
    for change_id in changes.values_list("pk", flat=True):
        change = ImportChange.objects.get(pk=change_id)
        model = SPECS_BY_LABEL[change.model]
        existing = model.objects.filter(pk__in=change.object_ids)
        objects = in_sight(existing).in_bulk()
        if change.row_numbers:
            out_of_sight += existing.count() - len(objects)
        touched, names = [], set()
        for pk, before in zip(change.object_ids, change.befores or [], strict=False):
            obj = objects.get(pk)
            if obj is None:
                continue  # deleted since the import, or out of sight: nothing to restore
            for name, value in (before or {}).items():
                if name == "tags":  # logged by imports applied before tag links were logged
                    obj.tags.set(Tag.objects.filter(name__in=value))
                    continue
                setattr(obj, name, model._meta.get_field(name).to_python(value))
                names.add(name)
            touched.append(obj)
        if names:
            objects_update(model, touched, sorted(names))
        restored += len(touched) if change.row_numbers else 0
    return restored, out_of_sight


SPECS_BY_LABEL = {spec.model._meta.label_lower: spec.model for spec in SPECS.values()}
