"""The registry of personal data: each app says what it holds about a person, how to find it,
how to erase it and how to correct it. Access, portability, erasure and rectification requests
work from this list only, so a model with personal data that is not registered is caught by a
test instead of being forgotten.

Apps register in their ``privacy.py`` (loaded by the consent app's ``ready()``):

    registry.register(Contact, find=..., personal_fields=(...), erase=..., erase_order=40,
                      rectify=...)
    registry.register_not_personal(Company, "organisations, not people")

A ``rectify`` hook corrects the rows ``find`` returned through the app's own service, so a
correction is normalised, validated and propagated like any other write of that app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import models
from django.utils.text import capfirst

# Field names that hold personal data wherever they appear; models with such a field (or a JSON
# document of traits/properties) must be registered, either as holders or as not personal.
PERSONAL_FIELD_NAMES = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "name",
        "street",
        "ip_address",
        "user_agent",
        "date_of_birth",
        "traits",
        "properties",
        "context",
    }
)

# ... and any field whose name contains one of these (subject_email, identifier_value).
PERSONAL_NAME_PARTS = ("email", "phone", "identifier")

# Fields holding a person's current data, which a rectification request may correct; a holder
# with one of them registers a ``rectify`` hook or says why its rows stay as recorded.
CORRECTABLE_FIELD_NAMES = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "street",
        "postal_code",
        "city",
        "date_of_birth",
        "traits",
    }
)

# What a person reads in their access package: each exported holder belongs to one category,
# shown in this order with this title and explanation.
CATEGORIES: dict[str, tuple[str, str]] = {
    "profile": (
        "Your profile",
        "What we know about you as a customer, and the identifiers (e-mail, phone, account and "
        "device ids) we recognise you by.",
    ),
    "activity": (
        "Your activity",
        "What you did on our websites and apps and in our shops, as we recorded it, and the "
        "customer groups (segments) it placed you in.",
    ),
    "consent": (
        "Your consent and choices",
        "What you agreed to or refused, when and how, and any restriction or objection.",
    ),
    "customer": (
        "Sales and support",
        "Your record in our customer relationship system: contact details, conversations, "
        "offers, tasks and support tickets.",
    ),
    "advertising": (
        "Advertising",
        "The browser cookies and device ids used for advertising, and the interest groups "
        "they were placed in.",
    ),
    "shared": (
        "Shared with other systems",
        "Your data as we sent it to the other systems we use.",
    ),
    "requests": (
        "Your requests",
        "The data protection requests you made and what we did with them.",
    ),
}

# rectify(rows found, subject, corrections, acting user) -> how many rows it corrected
Rectify = Callable[[models.QuerySet, "Subject", dict, object], int]


@dataclass(frozen=True)
class Subject:
    """One person as found from a request: the profiles (merged ones included) and every
    identifier known for them, normalised."""

    profile_ids: frozenset[int] = frozenset()
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    user_ids: frozenset[str] = frozenset()
    other_identifiers: frozenset[tuple[str, str]] = frozenset()
    names: frozenset[str] = frozenset()
    request_ids: frozenset[int] = frozenset()
    extra: dict = field(default_factory=dict, compare=False)

    def identifiers(self) -> list[tuple[str, str]]:
        """(kind, value) of every identifier, for the suppression list."""
        pairs = {("email", value) for value in self.emails}
        pairs |= {("phone", value) for value in self.phones}
        pairs |= {("user_id", value) for value in self.user_ids}
        return sorted(pairs | set(self.other_identifiers))

    def personal_strings(self) -> list[str]:
        """Every string that identifies the person, longest first (for scrubbing free text)."""
        values = {*self.emails, *self.phones, *self.user_ids, *self.names}
        return sorted((v for v in values if len(v) >= 3), key=len, reverse=True)


@dataclass(frozen=True)
class Holder:
    model: type[models.Model]
    find: Callable[[Subject], models.QuerySet]
    erase: Callable[[models.QuerySet, Subject], int]
    personal_fields: tuple[str, ...]
    erase_order: int = 50
    export: bool = True
    export_rows: Callable[[models.QuerySet, Subject], list[dict]] | None = None
    rectify: Rectify | None = None
    rectify_order: int = 50
    not_rectified: str = ""
    category: str = ""
    title: str = ""

    @property
    def label(self) -> str:
        return self.model._meta.label

    def rows_for_access(self, subject: Subject) -> list[dict]:
        """The person's rows for an access file: every column, unless the holder keeps other
        people's values beside theirs (a conflict naming another user, a journal of a whole
        import batch): then only the person's part (GDPR Art. 15(4))."""
        rows = self.find(subject).order_by("pk")
        if self.export_rows is not None:
            return self.export_rows(rows, subject)
        return list(rows.values())


_holders: dict[str, Holder] = {}
_not_personal: dict[str, str] = {}

# describe(profile ids, e-mails, phones) -> (names, e-mails, phones) an app knows for the person
Describe = Callable[[frozenset[int], set[str], set[str]], tuple[set[str], set[str], set[str]]]
_describers: list[Describe] = []


def register_describer(describe: Describe) -> None:
    """An app that knows more names or identifiers of a person than the profiles do (the CRM's
    contacts) helps find everything of theirs: erasure scrubs these from free text too."""
    if describe not in _describers:
        _describers.append(describe)


def describers() -> list[Describe]:
    return list(_describers)


# notify(subject, request id) -> one line per system told, for the request's log
Notify = Callable[["Subject", int], list[str]]
_erasure_notifiers: list[Notify] = []


def register_erasure_notifier(notify: Notify) -> None:
    """An app that sent the person's data to other systems (destinations) tells them of an
    erasure: its notifier queues their deletions, in the erasure's transaction, and says what
    it queued."""
    if notify not in _erasure_notifiers:
        _erasure_notifiers.append(notify)


def erasure_notifiers() -> list[Notify]:
    return list(_erasure_notifiers)


def register(
    model: type[models.Model],
    *,
    find: Callable[[Subject], models.QuerySet],
    erase: Callable[[models.QuerySet, Subject], int],
    personal_fields: tuple[str, ...] = (),
    erase_order: int = 50,
    export: bool = True,
    export_rows: Callable[[models.QuerySet, Subject], list[dict]] | None = None,
    rectify: Rectify | None = None,
    rectify_order: int = 50,
    not_rectified: str = "",
    category: str = "",
    title: str = "",
) -> None:
    """Register what a model holds about a person. ``erase`` receives the rows ``find``
    returned and deletes or anonymises them; lower ``erase_order`` runs first (rows that point at
    a profile go before the profile). ``export_rows`` gives the access file only the person's
    part of rows that also hold other people's values. ``rectify`` corrects the rows found
    (lower ``rectify_order`` first); ``not_rectified`` says why rows with correctable fields
    stay as recorded. An exported model names the ``category`` of ``CATEGORIES`` the person
    finds it under, and may give a ``title`` (else its plural verbose name)."""
    label = model._meta.label
    unknown = [name for name in personal_fields if not _has_field(model, name)]
    if unknown:
        raise ValueError(f"{label} has no field(s) {', '.join(unknown)}")
    if export and category not in CATEGORIES:
        raise ValueError(f"{label} is exported: give it a category, one of {', '.join(CATEGORIES)}")
    _holders[label] = Holder(
        model=model,
        find=find,
        erase=erase,
        personal_fields=tuple(personal_fields),
        erase_order=erase_order,
        export=export,
        export_rows=export_rows,
        rectify=rectify,
        rectify_order=rectify_order,
        not_rectified=not_rectified,
        category=category,
        title=title or str(capfirst(model._meta.verbose_name_plural)),
    )


def register_not_personal(model: type[models.Model], reason: str) -> None:
    """Declare, with the reason, that a model with person-like field names holds no personal
    data (a source's or a company's ``name``)."""
    _not_personal[model._meta.label] = reason


def holders() -> list[Holder]:
    return sorted(_holders.values(), key=lambda holder: (holder.erase_order, holder.label))


def rectify(subject: Subject, corrections: dict, actor=None) -> dict[str, int]:
    """Correct the person's data in every app that registered a hook; per model label, how many
    rows were corrected. Raises the first hook's error (a correction one app refuses is refused
    for all: the caller runs this in one transaction)."""
    corrected = {}
    for holder in sorted(_holders.values(), key=lambda h: (h.rectify_order, h.label)):
        if holder.rectify is not None:
            corrected[holder.label] = holder.rectify(
                holder.find(subject), subject, corrections, actor
            )
    return corrected


def correctable_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if f.name in CORRECTABLE_FIELD_NAMES]


def uncorrectable_fields(holder: Holder) -> list[str]:
    """Fields a rectification could not reach: correctable, yet no hook and no reason."""
    if holder.rectify is not None or holder.not_rectified:
        return []
    return correctable_fields(holder.model)


def is_holder(model: type[models.Model]) -> bool:
    """Whether the model holds people's data (registered with ``register``)."""
    return model._meta.label in _holders


def is_covered(model: type[models.Model]) -> bool:
    label = model._meta.label
    return label in _holders or label in _not_personal


def personal_looking_fields(model: type[models.Model]) -> list[str]:
    return [
        f.name
        for f in model._meta.concrete_fields
        if f.name in PERSONAL_FIELD_NAMES or any(part in f.name for part in PERSONAL_NAME_PARTS)
    ]


def _has_field(model: type[models.Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:
        return False
    return True


def scrub_text(text: str, subject: Subject) -> str:
    """Free text with the person's identifiers and names replaced by ``[erased]``."""
    import re

    for value in subject.personal_strings():
        text = re.sub(re.escape(value), "[erased]", text, flags=re.IGNORECASE)
    return text


def scrub_fields(queryset: models.QuerySet, subject: Subject, fields: tuple[str, ...]) -> int:
    """Scrub the person out of free-text fields of other records (a deal named after them,
    a ticket quoting their address) without deleting the records."""
    changed = 0
    for row in queryset.only("pk", *fields):
        updates = {name: scrub_text(getattr(row, name) or "", subject) for name in fields}
        if any(updates[name] != (getattr(row, name) or "") for name in fields):
            queryset.model.objects.filter(pk=row.pk).update(**updates)
            changed += 1
    return changed


def delete_rows(queryset: models.QuerySet, subject: Subject) -> int:
    return queryset.delete()[0]
