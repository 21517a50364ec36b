"""Data subject requests (GDPR Art. 12, 15-21): the status machine, and what each kind does.

received -> verified -> in_progress -> completed, and any open status -> rejected. Every step is
logged (who, what, when) in the same transaction as the change.

One module: the status machine and the handlers of each kind share the request's log and
its subject, and read as one workflow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cdphub.audit import audit_record
from consent import registry
from consent.access import access_package
from consent.hashing import suppression_hash
from consent.models import DataSubjectRequest, DataSubjectRequestAction, ProcessingRestriction
from consent.registry import Subject
from consent.services import ConsentError, consent_object
from profiles.models import Identity, Profile
from profiles.resolution.normalize import InvalidIdentifier, normalize_email, normalize_phone
from profiles.selectors import profile_resolve
from profiles.services import traits_normalize

Status = DataSubjectRequest.Status
Kind = DataSubjectRequest.Kind
Action = DataSubjectRequestAction.Action

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.RECEIVED: frozenset({Status.VERIFIED, Status.REJECTED}),
    Status.VERIFIED: frozenset({Status.IN_PROGRESS, Status.REJECTED}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.REJECTED}),
    Status.COMPLETED: frozenset(),
    Status.REJECTED: frozenset(),
}
# Art. 12(3): one month, extendable by two further months where necessary.
MAX_EXTENSION = dt.timedelta(days=60)
BASE_PERIOD = dt.timedelta(days=30)


class DsarError(ConsentError):
    """A request that cannot move on as asked; the message says why."""


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    return str(getattr(actor, "username", None) or actor)


def dsar_log(*, request: DataSubjectRequest, action: str, actor=None, note: str = "", **kw):
    return DataSubjectRequestAction.objects.create(
        request=request,
        action=action,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_label=kw.pop("label", None) or actor_label(actor),
        note=note,
        **kw,
    )


def _move(request: DataSubjectRequest, to_status: str, action: str, actor, note="", **fields):
    """Change status under a row lock so two officers cannot both move the same request."""
    locked = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    if to_status not in TRANSITIONS[locked.status]:
        allowed = ", ".join(sorted(TRANSITIONS[locked.status])) or "none (it is closed)"
        raise DsarError(
            f"request #{locked.pk} is {locked.status}: it cannot become {to_status} "
            f"(possible: {allowed})",
            field="status",
        )
    from_status = locked.status
    for name, value in {"status": to_status, **fields}.items():
        setattr(locked, name, value)
    locked.save()
    dsar_log(
        request=locked,
        action=action,
        actor=actor,
        note=note,
        from_status=from_status,
        to_status=to_status,
    )
    request.refresh_from_db()
    return request


def _normalised(kind: str, value: str) -> str:
    if not value:
        return ""
    try:
        return normalize_email(value) if kind == "email" else normalize_phone(value)
    except InvalidIdentifier as error:
        raise DsarError(str(error), field=f"subject_{kind}") from None


@transaction.atomic
def dsar_create(
    *,
    kind: str,
    email: str = "",
    phone: str = "",
    user_id: str = "",
    profile: Profile | None = None,
    details: str = "",
    corrections: dict | None = None,
    received_at: dt.datetime | None = None,
    actor=None,
    label: str | None = None,
) -> DataSubjectRequest:
    if kind not in Kind.values:
        raise DsarError(f"unknown kind {kind!r}; one of {', '.join(Kind.values)}", field="kind")
    if not (email or phone or user_id or profile):
        raise DsarError(
            "give an e-mail, phone, user id or profile to identify the person",
            field="subject_email",
        )
    if kind == Kind.RECTIFICATION and not corrections:
        raise DsarError("a rectification needs the corrected values", field="corrections")
    if corrections is not None and not isinstance(corrections, dict):
        raise DsarError("corrections must be an object of field: value", field="corrections")
    if corrections:
        corrections = _corrections_checked(corrections)
    received_at = received_at or timezone.now()
    request = DataSubjectRequest.objects.create(
        kind=kind,
        subject_email=_normalised("email", email),
        subject_phone=_normalised("phone", phone),
        subject_user_id=user_id.strip(),
        profile=profile,
        details=details,
        corrections=corrections or {},
        received_at=received_at,
        due_at=received_at + BASE_PERIOD,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    dsar_log(request=request, action=Action.CREATED, actor=actor, label=label, to_status="received")
    return request


def _corrections_checked(corrections: dict) -> dict:
    """Corrections with their identifiers normalised; an invalid one is refused now rather
    than when the request is run."""
    try:
        return traits_normalize(corrections)
    except ValidationError as error:
        raise DsarError(_problems(error), field="corrections") from None


@transaction.atomic
def dsar_result_open(*, request: DataSubjectRequest, actor=None, label: str = ""):
    """The request's access/portability file, opened for download, each download recorded in
    the request's trail (who, when). Callers check first that the actor may see personal
    data: the file is the person's data."""
    if not request.result_file:
        raise DsarError("this request has no result file", field="result_file")
    dsar_log(
        request=request,
        action=DataSubjectRequestAction.Action.DOWNLOADED,
        actor=actor,
        label=label,
        note=f"downloaded {request.result_file.name.rsplit('/', 1)[-1]}",
    )
    return request.result_file.open("rb")


@transaction.atomic
def dsar_verify(*, request: DataSubjectRequest, actor=None, note: str = "") -> DataSubjectRequest:
    """The person's identity was checked (Art. 12(6)); links the request to their profile."""
    subject = subject_resolve(request)
    profile_id = min(subject.profile_ids, default=None)
    survivor = profile_resolve(profile_id) if profile_id else None
    return _move(
        request,
        Status.VERIFIED,
        Action.VERIFIED,
        actor,
        note=note or f"{len(subject.profile_ids)} profile(s) found",
        verified_at=timezone.now(),
        profile=request.profile or survivor,
    )


@transaction.atomic
def dsar_reject(*, request: DataSubjectRequest, reason: str, actor=None) -> DataSubjectRequest:
    if not reason.strip():
        raise DsarError("a rejection needs a reason (it is told to the person)", field="reason")
    return _move(
        request,
        Status.REJECTED,
        Action.REJECTED,
        actor,
        note=reason,
        rejection_reason=reason,
        completed_at=timezone.now(),
    )


@transaction.atomic
def dsar_extend(
    *, request: DataSubjectRequest, days: int, reason: str, actor=None
) -> DataSubjectRequest:
    """Extend the due date (Art. 12(3)): by at most two months in total, with a reason."""
    locked = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status not in (Status.RECEIVED, Status.VERIFIED, Status.IN_PROGRESS):
        raise DsarError(f"request #{locked.pk} is {locked.status}: closed", field="status")
    if not reason.strip():
        raise DsarError("an extension needs a reason", field="reason")
    if days < 1:
        raise DsarError("extend by at least one day", field="days")
    new_due = locked.due_at + dt.timedelta(days=days)
    latest = locked.received_at + BASE_PERIOD + MAX_EXTENSION
    if new_due > latest:
        raise DsarError(
            f"the due date can be extended to {latest:%Y-%m-%d} at the latest (two months "
            "beyond the first month)",
            field="days",
        )
    old_due = locked.due_at
    locked.due_at = new_due
    locked.extension_reason = "\n".join(filter(None, [locked.extension_reason, reason]))
    locked.save(update_fields=["due_at", "extension_reason", "updated_at"])
    dsar_log(
        request=locked,
        action=Action.EXTENDED,
        actor=actor,
        note=f"{old_due:%Y-%m-%d} -> {new_due:%Y-%m-%d}: {reason}",
    )
    request.refresh_from_db()
    return request


# --- Finding the person ------------------------------------------------------------------------


def subject_resolve(request: DataSubjectRequest) -> Subject:
    """The person behind a request: profiles found by any identifier (merged profiles included)
    and every identifier and name known for them."""
    seeds = set()
    identifiers = {
        ("email", request.subject_email),
        ("phone", request.subject_phone),
        ("user_id", request.subject_user_id),
    }
    lookup = Q()
    for kind, value in identifiers:
        if value:
            lookup |= Q(kind=kind, value=value)
    if lookup:
        seeds |= set(Identity.objects.filter(lookup).values_list("profile_id", flat=True))
    if request.profile_id:
        seeds.add(request.profile_id)
    profile_ids = _profile_cluster(seeds)
    return _subject_for(profile_ids, identifiers, request)


def _profile_cluster(seeds: set[int]) -> frozenset[int]:
    """The profiles, their merge survivors and every profile merged into them."""
    found = set()
    for profile_id in seeds:
        survivor = profile_resolve(profile_id)
        if survivor is not None:
            found.add(survivor.pk)
        found.add(profile_id)
    frontier = set(found)
    while frontier:
        merged = set(
            Profile.objects.filter(merged_into_id__in=frontier).values_list("pk", flat=True)
        )
        frontier = merged - found
        found |= merged
    return frozenset(Profile.objects.filter(pk__in=found).values_list("pk", flat=True))


def _subject_for(profile_ids, identifiers, request) -> Subject:
    values: dict[str, set[str]] = {"email": set(), "phone": set(), "user_id": set()}
    other: set[tuple[str, str]] = set()
    for kind, value in identifiers:
        if value:
            values[kind].add(value)
    for kind, value in Identity.objects.filter(profile_id__in=profile_ids).values_list(
        "kind", "value"
    ):
        (values[kind].add(value) if kind in values else other.add((kind, value)))
    names: set[str] = set()
    for traits in Profile.objects.filter(pk__in=profile_ids).values_list("traits", flat=True):
        names |= _trait_names(traits or {})
        for key in ("email", "phone"):
            if isinstance((traits or {}).get(key), str) and traits[key]:
                values[key].add(traits[key].strip())
    for describe in registry.describers():
        more_names, emails, phones = describe(
            frozenset(profile_ids), values["email"] - {""}, values["phone"] - {""}
        )
        names |= more_names
        values["email"] |= emails - {""}
        values["phone"] |= phones - {""}
    requests = set(
        DataSubjectRequest.objects.filter(profile_id__in=profile_ids).values_list("pk", flat=True)
    )
    return Subject(
        profile_ids=frozenset(profile_ids),
        emails=frozenset(values["email"]),
        phones=frozenset(values["phone"]),
        user_ids=frozenset(values["user_id"]),
        other_identifiers=frozenset(other),
        names=frozenset(names),
        request_ids=frozenset(requests | {request.pk}),
    )


def _trait_names(traits: dict) -> set[str]:
    keys = ("name", "firstName", "lastName", "first_name", "last_name", "fullName")
    names = {str(traits[key]).strip() for key in keys if traits.get(key)}
    return {name for name in names if name}


# --- Running a request -------------------------------------------------------------------------


def dsar_process(*, request: DataSubjectRequest, actor=None) -> DataSubjectRequest:
    """Run a verified request: mark it in progress (visible at once), do the work in one
    transaction, complete it. A failure is logged and leaves it in progress, to be run again."""
    with transaction.atomic():
        locked = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status == Status.VERIFIED:
            _move(request, Status.IN_PROGRESS, Action.STARTED, actor)
        elif locked.status != Status.IN_PROGRESS:
            raise DsarError(
                f"request #{locked.pk} is {locked.status}: only a verified request can be run",
                field="status",
            )
    try:
        with transaction.atomic():
            note = HANDLERS[request.kind](request, subject_resolve(request), actor)
            request.refresh_from_db()  # erasure anonymised the request row itself
            return _move(
                request,
                Status.COMPLETED,
                Action.COMPLETED,
                actor,
                note=note,
                completed_at=timezone.now(),
            )
    except Exception as error:
        dsar_log(request=request, action=Action.FAILED, actor=actor, note=_failure(error))
        raise


def _failure(error: Exception) -> str:
    """What went wrong, for the request's log (a refused correction says which value)."""
    if isinstance(error, ValidationError):
        return f"refused: {_problems(error)}"[:500]
    return type(error).__name__


def _problems(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{key}: {' '.join(text)}" for key, text in error.message_dict.items())
    return " ".join(error.messages)


def _export(request: DataSubjectRequest, subject: Subject, actor) -> str:
    """Access and portability: the access package (a readable summary, JSON, a CSV per table)."""
    content, tables = access_package(request, subject)
    name = f"request-{request.pk}-{request.kind}.zip"
    request.result_file.save(name, ContentFile(content), save=False)
    DataSubjectRequest.objects.filter(pk=request.pk).update(result_file=request.result_file.name)
    counts = ", ".join(f"{table.holder.title.lower()}: {len(table.rows)}" for table in tables)
    return f"exported {counts or 'nothing found'}"


def _erase(request: DataSubjectRequest, subject: Subject, actor) -> str:
    """Suppress every identifier, then let each app erase or anonymise what it holds."""
    from consent.models import Suppression

    Suppression.objects.bulk_create(
        [
            Suppression(
                identifier_kind=kind,
                value_hash=suppression_hash(kind, value),
                reason=f"erasure request #{request.pk}",
                request_id=request.pk,
            )
            for kind, value in subject.identifiers()
        ],
        ignore_conflicts=True,
    )
    counts = []
    for holder in registry.holders():
        changed = holder.erase(holder.find(subject), subject)
        if changed:
            counts.append(f"{holder.label}={changed}")
    told = [line for notify in registry.erasure_notifiers() for line in notify(subject, request.pk)]
    note = f"suppressed {len(subject.identifiers())} identifier(s); erased " + ", ".join(counts)
    return note + ("; " + "; ".join(told) if told else "")


def dsar_erasure_preview(*, request: DataSubjectRequest) -> dict:
    """What running this erasure would do, changing nothing: the identifiers put on the
    suppression list, and per app and kind of record how many rows are deleted or anonymised
    (each app's own rule decides which)."""
    subject = subject_resolve(request)
    rows = []
    for holder in registry.holders():
        count = holder.find(subject).count()
        if count:
            meta = holder.model._meta
            rows.append(
                {
                    "app": meta.app_config.verbose_name,
                    "records": meta.verbose_name_plural,
                    "count": count,
                }
            )
    return {
        "profiles": len(subject.profile_ids),
        "suppressed": len(subject.identifiers()),
        "rows": sorted(rows, key=lambda row: (row["app"], row["records"])),
    }


def erasure_answer_log(destination, rows, result) -> None:
    """A delivery outcome listener (``cdphub.delivery``): a destination's answer to an
    erasure's deletion, on the request's log, each attempt (a retry, then the delivery)."""
    for row in rows:
        request_id = (
            row.payload.get("erasureRequest") if row.payload.get("type") == "delete" else None
        )
        request = DataSubjectRequest.objects.filter(pk=request_id).first() if request_id else None
        if request is None:
            continue
        answer = f"answered {result.status_code}" if result.status_code else result.error
        answer = f", {answer}" if answer else ""
        outcome = {
            "delivered": "deleted",
            "transient": "not yet: retried later",
            "permanent": "refused: retry it from the destination's dead letters",
        }[result.outcome]
        dsar_log(
            request=request,
            action=Action.DESTINATION_ANSWER,
            note=f"destination {destination.name}: {outcome}{answer}"[:1000],
        )


def _rectify(request: DataSubjectRequest, subject: Subject, actor) -> str:
    """Each app corrects its own rows through its own service (registered ``rectify`` hooks),
    so the corrected values are normalised and identities move as on any other write."""
    corrected = registry.rectify(subject, request.corrections or {}, actor)
    counts = ", ".join(
        f"{count} {label.split('.')[-1].lower()}(s)" for label, count in corrected.items() if count
    )
    fields = ", ".join(sorted(request.corrections or {}))
    return f"corrected {fields} on {counts or 'no record'}"


def _restrict(request: DataSubjectRequest, subject: Subject, actor) -> str:
    survivors = Profile.objects.filter(pk__in=subject.profile_ids, merged_into__isnull=True)
    for profile in survivors:
        ProcessingRestriction.objects.get_or_create(
            profile=profile,
            defaults={"request": request, "reason": f"restriction request #{request.pk}"},
        )
    return f"restricted {len(survivors)} profile(s)"


def _object(request: DataSubjectRequest, subject: Subject, actor) -> str:
    survivors = Profile.objects.filter(pk__in=subject.profile_ids, merged_into__isnull=True)
    withdrawn = 0
    for profile in survivors:
        withdrawn += len(
            consent_object(
                profile=profile,
                method="api",
                source=f"objection request #{request.pk}",
                recorded_by=actor,
            )
        )
    return f"withdrew {withdrawn} marketing consent(s) on {len(survivors)} profile(s)"


HANDLERS: dict[str, Callable[[DataSubjectRequest, Subject, object], str]] = {
    Kind.ACCESS: _export,
    Kind.PORTABILITY: _export,
    Kind.ERASURE: _erase,
    Kind.RECTIFICATION: _rectify,
    Kind.RESTRICTION: _restrict,
    Kind.OBJECTION: _object,
}


@transaction.atomic
def restriction_lift(*, profile: Profile, actor=None) -> bool:
    """End a restriction (Art. 18(3)): the profile may be used again under its consent. The
    request that restricted it, if any, logs the lift; the audit trail records who lifted it."""
    restriction = ProcessingRestriction.objects.select_for_update().filter(profile=profile).first()
    if restriction is None:
        return False
    if restriction.request_id:
        dsar_log(
            request=restriction.request,
            action=Action.RESTRICTION_LIFTED,
            actor=actor,
            note=f"restriction of profile #{profile.pk} lifted",
        )
    audit_record(
        actor=actor, action="processing_restriction.lift", obj=profile, note="restriction lifted"
    )
    restriction.delete()
    return True
