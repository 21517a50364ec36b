"""CRM writes: contacts (and their CDP profile link), owners, tags, deal stages.

Admin, API, imports and tasks all call these, so a rule holds however the data arrives.

Past 400 lines because every CRM write lives here, as the layout prescribes; it becomes a
package when a part (linking, merges) grows on its own."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from cdphub.audit import audit_record, audit_record_many
from cdphub.sql import execute
from crm.models import Company, Contact, Deal, DealStageChange, Stage, Tag
from profiles.resolution.normalize import InvalidIdentifier, PhoneNotValid, normalize_phone
from profiles.resolution.resolver import profiles_resolve
from profiles.services import identities_remove, profile_traits_merge, traits_normalize

logger = logging.getLogger(__name__)

# CRM field -> profile trait copied on every contact write (the CDP's camelCase trait names).
TRAIT_FIELDS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "email": "email",
    "phone": "phone",
    "job_title": "jobTitle",
    "lifecycle_stage": "lifecycleStage",
}


# What linking a contact to its profile reads of it (``contact_profiles_link``).
LINKED_FIELDS = ("id", "profile_id", "company_id", *TRAIT_FIELDS)


class ContactSuppressed(ValidationError):
    """The person was erased on request; their identifiers may not be brought back."""


def web_domain(value: object) -> str:
    """A web domain as companies keep it: lower-case, without scheme, www, port or path
    ('' when the value is not a domain)."""
    if not isinstance(value, str):
        return ""
    cleaned = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value.strip().lower())
    cleaned = cleaned.split("/")[0].split("?")[0].split(":")[0].removeprefix("www.")
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", cleaned) or len(cleaned) > 255:
        return ""
    return cleaned


def contact_identifiers_normalize(*, email: str, phone: str) -> tuple[str, str]:
    """Both identifiers in their canonical form; blank stays blank. Raises ``ValidationError``
    keyed by field so forms, the API and imports can say which value is wrong. The profiles'
    rule (``traits_normalize``), so a contact and its profile hold the same value; except that
    a contact keeps a possible phone number that is not valid (``record_phone``)."""
    errors = {}
    try:
        email = traits_normalize({"email": email})["email"] or ""
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        phone = record_phone(phone)
    except InvalidIdentifier as exc:
        errors["phone"] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    return email, phone


def record_phone(value: object) -> str:
    """A phone number as a CRM record keeps it (``phone_for_record``)."""
    return phone_for_record(value)[0]


def phone_for_record(value: object) -> tuple[str, str | None]:
    """A phone number as a CRM record keeps it, in E.164, and a warning when it is possible for
    its country but in no assigned range (reserved, or newer than the numbering metadata): kept
    too, never used as an identifier. Only an impossible value is refused
    (``InvalidIdentifier``)."""
    if value is None or not str(value).strip():
        return "", None
    try:
        number, warning = normalize_phone(value), None
    except PhoneNotValid as exc:
        number, warning = exc.e164, PHONE_NOT_VALID
    phone_verdict_remember(number, warning)
    return number, warning


# The verdicts of the numbers checked last, by E.164 number: an import checks every number of
# its file, and linking the contacts to profiles then asks again for each of them (checking a
# number costs about 20 µs: two seconds for 100,000 contacts). Bounded: forgotten when full.
PHONE_VERDICTS: dict[str, str | None] = {}
PHONE_VERDICTS_KEPT = 200_000


def phone_verdict_remember(number: str, warning: str | None) -> None:
    if len(PHONE_VERDICTS) >= PHONE_VERDICTS_KEPT:
        PHONE_VERDICTS.clear()
    PHONE_VERDICTS[number] = warning


def phone_warning(phone: str) -> str | None:
    """Why a contact's stored phone is not used to find or fill its CDP profile, or None
    (``phone_for_record``'s verdict; remembered, as linking asks twice per contact)."""
    try:
        return PHONE_VERDICTS[phone]
    except KeyError:
        pass
    try:
        return phone_for_record(phone)[1]
    except InvalidIdentifier:
        return PHONE_NOT_VALID  # stored before numbers were checked: no identifier either


PHONE_NOT_VALID = (
    "the phone number is possible but not valid in its country (a reserved or new range): kept "
    "as given, but not used to find or fill the person's CDP profile"
)


def contact_is_suppressed(email: str, phone: str) -> bool:
    """Whether either (normalised) identifier belongs to a person erased on request."""
    return bool(suppressed_identifiers(emails=[email], phones=[phone]))


def suppressed_identifiers(*, emails: Iterable[str], phones: Iterable[str]) -> set[tuple[str, str]]:
    """The (kind, value) pairs among these normalised identifiers that are on the consent app's
    suppression list, looked up in one query (imports check a whole batch at once)."""
    from consent.selectors import suppressed_identifiers as suppressed

    pairs = [("email", value) for value in emails] + [("phone", value) for value in phones]
    return suppressed(pairs, normalised=True)


@transaction.atomic
def contact_save(*, contact: Contact) -> Contact:
    """Save a new or edited contact: identifiers normalised, suppression respected, the CDP
    profile linked and its traits updated, all in one transaction."""
    contact.email, contact.phone = contact_identifiers_normalize(
        email=contact.email, phone=contact.phone
    )
    if contact.pk is None and contact_is_suppressed(contact.email, contact.phone):
        raise ContactSuppressed(
            "This person was erased on request (suppression list); they cannot be re-created."
        )
    contact.save()
    contact_profiles_link(contacts=[contact])
    return contact


def company_by_name(name: str) -> Company:
    """The company of this name (any case), created when there is none."""
    name = name[: Company._meta.get_field("name").max_length]
    company = Company.objects.filter(name__iexact=name).order_by("pk").first()
    return company or Company.objects.create(name=name)


def contact_create(*, tags: Sequence[Tag] | None = None, **fields) -> Contact:
    with transaction.atomic():
        contact = contact_save(contact=Contact(**fields))
        if tags:
            contact.tags.set(tags)
    return contact


def contact_update(*, contact: Contact, tags: Sequence[Tag] | None = None, **fields) -> Contact:
    with transaction.atomic():
        for name, value in fields.items():
            setattr(contact, name, value)
        contact_save(contact=contact)
        if tags is not None:
            contact.tags.set(tags)
    return contact


# Contact fields a rectification may correct, by the name it uses: the CDP's trait name or the
# CRM field's own.
CORRECTABLE_FIELDS = {
    **{trait: field for field, trait in TRAIT_FIELDS.items() if field != "lifecycle_stage"},
    **{field: field for field in ("first_name", "last_name", "street", "postal_code", "city")},
    "postalCode": "postal_code",
}


@transaction.atomic
def contacts_rectify(*, contacts: QuerySet, corrections: dict) -> int:
    """Correct these contacts' fields (a rectification request) with the same rules as any
    edit: identifiers normalised, the profile link and its traits updated. Returns how many
    contacts were corrected."""
    fields = {
        CORRECTABLE_FIELDS[key]: value
        for key, value in corrections.items()
        if key in CORRECTABLE_FIELDS
    }
    if not fields:
        return 0
    corrected = 0
    for contact in contacts.select_for_update().order_by("pk"):
        contact_update(contact=contact, **fields)
        corrected += 1
    return corrected


def contact_traits(contact: Contact, company_name: str | None = None) -> dict[str, str]:
    """The profile traits a contact contributes; blanks are left out so a CRM record without a
    phone does not wipe the phone another source sent."""
    traits = {}
    for field, trait in TRAIT_FIELDS.items():
        value = getattr(contact, field)
        if value not in (None, ""):
            traits[trait] = str(value)
    if phone_warning(contact.phone):
        del traits["phone"]
    if company_name:
        traits["company"] = company_name
    return traits


class ProfileLinks(NamedTuple):
    """What linking changed, so an import can be reverted exactly: the ids of the profiles and
    identities it created, the contacts it linked to another profile (contact id -> previous
    profile id), and the existing profiles whose traits it changed (profile id -> the traits
    it replaced, with their previous values, and those it added)."""

    profiles: list[int]
    identities: list[int]
    relinked: dict[int, int | None]
    traits: dict[int, dict]


def contact_profiles_link(*, contacts: Sequence[Contact], source=None) -> ProfileLinks:
    """Link each contact to the CDP profile owning its e-mail/phone (creating the profile when
    none does, through the hub's one identity resolver), record the ``crm_contact`` identity and
    copy CRM fields into the profile's traits. Set-based, so imports call it per batch of
    hundreds of contacts."""
    contacts = [contact for contact in contacts if contact.pk is not None]
    if not contacts:
        return ProfileLinks([], [], {}, {})
    company_names = _company_names(contacts)
    traits = [contact_traits(c, company_names.get(c.company_id)) for c in contacts]
    resolved = profiles_resolve(
        [contact_identifiers(contact) for contact in contacts],
        new_traits=traits,
        linked=[contact.profile_id for contact in contacts],
        source=source,
    )
    profile_of = dict(zip((c.pk for c in contacts), resolved.profile_ids, strict=True))
    created = set(resolved.created_profiles)
    replaced = profile_traits_merge(
        {
            profile_of[contact.pk]: contact_traits_
            for contact, contact_traits_ in zip(contacts, traits, strict=True)
            if profile_of[contact.pk] not in created
        }
    )
    relinked = {c.pk: c.profile_id for c in contacts if c.profile_id != profile_of[c.pk]}
    _contact_profile_ids_set({pk: profile_of[pk] for pk in relinked})
    for contact in contacts:
        contact.profile_id = profile_of[contact.pk]
    return ProfileLinks(resolved.created_profiles, resolved.created_identities, relinked, replaced)


def contact_identifiers(contact: Contact) -> list[tuple[str, str]]:
    """The identifiers of a contact's person, strongest first (its identifiers are normalised
    when it is saved)."""
    phone = "" if phone_warning(contact.phone) else contact.phone
    pairs = [("crm_contact", str(contact.pk)), ("email", contact.email), ("phone", phone)]
    return [(kind, value) for kind, value in pairs if value]


def _company_names(contacts: Sequence[Contact]) -> dict[int, str]:
    from crm.models import Company

    ids = {c.company_id for c in contacts if c.company_id}
    if not ids:
        return {}
    return dict(Company.objects.filter(pk__in=ids).values_list("pk", "name"))


def _contact_profile_ids_set(profile_by_contact: dict[int, int]) -> None:
    if not profile_by_contact:
        return
    execute(
        f"""
        UPDATE {Contact._meta.db_table} AS c SET profile_id = v.profile_id
          FROM unnest(%b::bigint[], %b::bigint[]) AS v(id, profile_id)
         WHERE c.id = v.id
        """,  # noqa: S608 - the table name is ours; values are parameters
        [list(profile_by_contact), list(profile_by_contact.values())],
    )


@transaction.atomic
def records_assign_owner(*, queryset: QuerySet, owner, actor=None) -> int:
    """Give the selected CRM records (contacts, companies, deals, ...) a new owner."""
    fields = {"owner": owner}
    if any(f.name == "updated_at" for f in queryset.model._meta.fields):
        fields["updated_at"] = timezone.now()
    ids = list(queryset.values_list("pk", flat=True))
    count = queryset.model.objects.filter(pk__in=ids).update(**fields)
    audit_record_many(
        actor=actor,
        action="owner.assign",
        model=queryset.model,
        ids=ids,
        note=f"owner set to user #{getattr(owner, 'pk', owner)}",
    )
    return count


def tag_get_or_create(*, name: str) -> Tag:
    name = " ".join(name.split())
    if not name:
        raise ValidationError({"tag": "A tag needs a name."})
    tag, _ = Tag.objects.get_or_create(name=name)
    return tag


@transaction.atomic
def records_add_tag(*, queryset: QuerySet, name: str, actor=None) -> tuple[Tag, int]:
    """Tag the selected contacts or companies; returns the tag and how many were newly tagged."""
    tag = tag_get_or_create(name=name)
    through = queryset.model.tags.through
    owner_field = f"{queryset.model._meta.model_name}_id"
    already = set(through.objects.filter(tag=tag).values_list(owner_field, flat=True))
    links = [
        through(**{owner_field: pk, "tag_id": tag.pk})
        for pk in queryset.values_list("pk", flat=True)
        if pk not in already
    ]
    through.objects.bulk_create(links, ignore_conflicts=True)
    audit_record_many(
        actor=actor,
        action="tag.add",
        model=queryset.model,
        ids=[getattr(link, owner_field) for link in links],
        note=f"tag #{tag.pk} added",
    )
    return tag, len(links)


@transaction.atomic
def contacts_change_lifecycle(*, queryset: QuerySet, lifecycle_stage: str, actor=None) -> int:
    if lifecycle_stage not in Contact.LifecycleStage.values:
        raise ValidationError({"lifecycle_stage": f"Unknown lifecycle stage {lifecycle_stage!r}."})
    ids = list(queryset.values_list("pk", flat=True))
    contacts = Contact.objects.filter(pk__in=ids)
    count = contacts.update(lifecycle_stage=lifecycle_stage, updated_at=timezone.now())
    contact_profiles_link(contacts=list(contacts))
    audit_record_many(
        actor=actor,
        action="lifecycle.change",
        model=Contact,
        ids=ids,
        note=f"lifecycle stage set to {lifecycle_stage}",
    )
    return count


def deal_stage_fields(stage: Stage) -> dict:
    """What moving a deal into ``stage`` implies: pipeline, default probability, status."""
    status = Deal.Status.WON if stage.is_won else Deal.Status.LOST if stage.is_lost else "open"
    now = timezone.now()
    return {
        "pipeline_id": stage.pipeline_id,
        "stage": stage,
        "probability": 100 if stage.is_won else 0 if stage.is_lost else stage.probability,
        "status": status,
        "closed_at": now if status != Deal.Status.OPEN else None,
        "stage_entered_at": now,
    }


class DealMoveRefused(ValidationError):
    """A move the board cannot make: it shows the reason and puts the card back."""


class DealMoveConflict(DealMoveRefused):
    """The deal is no longer in the stage the board showed: someone moved it meanwhile."""


def stage_changes_record(moves: Iterable[tuple[int, int | None, int]], actor=None) -> list[int]:
    """History rows for deals entering a stage: ``(deal id, from stage id, to stage id)``;
    returns their ids (an import logs them, so reverting it removes them)."""
    changed_by = actor if getattr(actor, "pk", None) else None
    rows = DealStageChange.objects.bulk_create(
        DealStageChange(deal_id=deal, from_stage_id=old, to_stage_id=new, changed_by=changed_by)
        for deal, old, new in moves
    )
    return [row.pk for row in rows]


@transaction.atomic
def deals_move_to_stage(*, queryset: QuerySet, stage: Stage, actor=None) -> int:
    """Move the deals of ``queryset`` not yet in ``stage`` into it; returns how many moved."""
    fields = deal_stage_fields(stage)
    fields["stage_id"] = fields.pop("stage").pk
    moving = list(
        Deal.objects.select_for_update()
        .filter(pk__in=queryset.exclude(stage=stage).values("pk"))
        .values_list("pk", "stage_id")
    )
    ids = [pk for pk, _ in moving]
    count = Deal.objects.filter(pk__in=ids).update(**fields, updated_at=timezone.now())
    stage_changes_record([(pk, old, stage.pk) for pk, old in moving], actor)
    audit_record_many(
        actor=actor, action="stage.move", model=Deal, ids=ids, note=f"moved to stage #{stage.pk}"
    )
    return count


@transaction.atomic
def deal_move(*, deal: Deal, stage: Stage, from_stage_id: int | None, actor=None) -> Deal:
    """Move one deal into another stage of its pipeline, as the board does: refused when the
    stage belongs to another pipeline, or when the deal is no longer in ``from_stage_id``
    (the stage the mover saw it in; None skips that check)."""
    deal = Deal.objects.select_for_update().select_related("stage", "pipeline").get(pk=deal.pk)
    if stage.pipeline_id != deal.pipeline_id:
        raise DealMoveRefused(
            f"Stage {stage.name!r} belongs to pipeline {stage.pipeline}, and deal "
            f"{deal.name!r} to pipeline {deal.pipeline}: change a deal's pipeline on its page."
        )
    if from_stage_id is not None and deal.stage_id != from_stage_id:
        raise DealMoveConflict(deal_moved_meanwhile(deal))
    if deal.stage_id == stage.pk:
        return deal
    deal.stage = stage
    deal.probability = deal_stage_fields(stage)["probability"]  # the new stage's default
    deal_save(deal=deal, actor=actor)
    audit_record(actor=actor, action="stage.move", obj=deal, note=f"moved to stage #{stage.pk}")
    return deal


def deal_moved_meanwhile(deal: Deal) -> str:
    last = deal.stage_changes.select_related("changed_by").first()
    who = (last.changed_by.get_username() if last and last.changed_by else "someone") + " "
    when = f" at {timezone.localtime(last.changed_at):%H:%M}" if last else ""
    return (
        f"Deal {deal.name!r} is no longer where the board showed it: {who}moved it to "
        f"{deal.stage.name!r}{when}. Reload the board to see the deals as they are now."
    )


@transaction.atomic
def deal_save(*, deal: Deal, actor=None) -> Deal:
    """Save a deal whose stage must belong to its pipeline. Entering a stage (compared with
    the stored deal) sets the status (a won stage wins the deal, a lost stage loses it),
    keeps the given probability in an open stage, and is recorded in the deal's history."""
    if deal.pipeline_id is None and deal.stage_id is not None:
        deal.pipeline_id = deal.stage.pipeline_id
    if deal.stage.pipeline_id != deal.pipeline_id:
        raise ValidationError(
            {"stage": f"Stage {deal.stage.name!r} is not a stage of pipeline {deal.pipeline}."}
        )
    stored_stage_id = None
    if deal.pk is not None:
        stored = Deal.objects.select_for_update().filter(pk=deal.pk)
        stored_stage_id = stored.values_list("stage_id", flat=True).first()
    stage_changed = deal.pk is None or stored_stage_id != deal.stage_id
    if stage_changed:
        implied = deal_stage_fields(deal.stage)
        deal.status = implied["status"]
        deal.closed_at = deal.closed_at or implied["closed_at"]
        deal.stage_entered_at = implied["stage_entered_at"]
        if deal.status != Deal.Status.OPEN:
            deal.probability = implied["probability"]
    if deal.status == Deal.Status.OPEN:
        deal.closed_at = None
    elif deal.closed_at is None:
        deal.closed_at = timezone.now()
    deal.save()
    if stage_changed:
        stage_changes_record([(deal.pk, stored_stage_id, deal.stage_id)], actor)
    return deal


def data_export_record(
    *, user, resource: str, row_count: int, file_format: str, included_pii: bool
) -> None:
    """Audit row (and log line) of an export, so PII leaving the system can be traced."""
    from crm.models import DataExport

    DataExport.objects.create(
        resource=resource,
        row_count=row_count,
        file_format=file_format,
        included_pii=included_pii,
        exported_by=user if getattr(user, "pk", None) else None,
    )
    logger.info(
        "export of %s %s rows as %s by %s (personal data: %s)",
        row_count,
        resource,
        file_format,
        user,
        "yes" if included_pii else "no",
    )


MERGE_FILL_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "street",
    "postal_code",
    "city",
    "country",
    "date_of_birth",
    "job_title",
    "external_id",
    "company_id",
    "owner_id",
    "profile_id",
)


@transaction.atomic
def contact_merge(*, survivor: Contact, merged: Contact, merged_by=None):
    """Fold ``merged`` into ``survivor``: deals, activities, tickets, tasks and tags move, blank
    fields of the survivor are filled from the merged contact (its profile link too), an audit
    row keeps the merged contact's data, and the merged contact is deleted."""
    from crm.models import Activity, ContactMerge, Task, Ticket

    if survivor.pk == merged.pk:
        raise ValidationError("A contact cannot be merged into itself.")
    survivor = Contact.objects.select_for_update().get(pk=survivor.pk)
    merged = Contact.objects.select_for_update().get(pk=merged.pk)
    snapshot = {f.attname: getattr(merged, f.attname) for f in Contact._meta.concrete_fields}
    moved = {}
    for model in (Deal, Activity, Ticket, Task):
        ids = list(model.objects.filter(contact=merged).values_list("pk", flat=True))
        model.objects.filter(pk__in=ids).update(contact=survivor)
        moved[model._meta.model_name] = ids
    moved["tags"] = list(merged.tags.values_list("pk", flat=True))
    survivor.tags.add(*moved["tags"])
    external_id = merged.external_id
    merged_pk = merged.pk
    identities_remove([("crm_contact", str(merged_pk))])
    # Deleted before filling, so a moved unique external_id does not collide; its pairs in the
    # duplicate review queue go with it (the audit row below records the merge).
    merged.delete()
    for name in MERGE_FILL_FIELDS:
        if getattr(survivor, name) in (None, "") and snapshot.get(name) not in (None, ""):
            setattr(survivor, name, external_id if name == "external_id" else snapshot[name])
    contact_save(contact=survivor)
    merge = ContactMerge.objects.create(
        survivor=survivor,
        merged_id=merged_pk,
        merged_data=json.loads(json.dumps(snapshot, cls=DjangoJSONEncoder)),
        moved=moved,
        merged_by=merged_by if getattr(merged_by, "pk", None) else None,
    )
    audit_record(
        actor=merged_by,
        action="contact.merge",
        obj=survivor,
        note=f"contact #{merged_pk} merged in",
    )
    return merge


@transaction.atomic
def duplicates_dismiss(*, queryset: QuerySet, actor=None) -> int:
    """Mark the selected pairs as not duplicates; they are not raised again."""
    from crm.models import DuplicateCandidate

    ids = list(queryset.filter(status=DuplicateCandidate.Status.OPEN).values_list("pk", flat=True))
    count = DuplicateCandidate.objects.filter(pk__in=ids).update(
        status=DuplicateCandidate.Status.DISMISSED, reviewed_at=timezone.now()
    )
    audit_record_many(actor=actor, action="duplicate.dismiss", model=DuplicateCandidate, ids=ids)
    return count


@transaction.atomic
def duplicates_refresh(*, min_score: float | None = None) -> int:
    """Fill the review queue with the current likely duplicates; pairs already reviewed keep
    their decision. Returns the number of open pairs."""
    from crm.duplicates import DEFAULT_MIN_SCORE, duplicate_candidates
    from crm.models import DuplicateCandidate

    candidates = duplicate_candidates(min_score=min_score or DEFAULT_MIN_SCORE)
    DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.OPEN).delete()
    DuplicateCandidate.objects.bulk_create(
        [
            DuplicateCandidate(
                contact_a_id=c.a["id"], contact_b_id=c.b["id"], score=c.score, reasons=c.reasons
            )
            for c in candidates
        ],
        ignore_conflicts=True,  # reviewed pairs stay as they were decided
        batch_size=2000,
    )
    return DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.OPEN).count()
