"""What can be imported and exported, per resource: columns (with the header synonyms people
really use), how each cell is read, which fields can key an import, and the
django-import-export resources behind the admin's CSV/XLSX exports.

Every resource's column table in one module: the import and export read them side by side,
and a change to one resource's columns is made next to the others'."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from import_export import fields as ie_fields
from import_export import resources
from import_export import widgets as ie_widgets

from cdphub.csv_export import neutralise
from crm.customfields import MODELS, custom_value_parse, definitions
from crm.models import OUT_OF_SIGHT, Activity, Company, Contact, Deal
from crm.selectors import links_out_of_sight
from crm.services import phone_for_record, web_domain
from profiles.resolution.normalize import InvalidIdentifier, normalize_email

EMAIL_MAX_LENGTH = Contact._meta.get_field("email").max_length


class CellError(ValueError):
    """A cell that cannot be read; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Warned:
    """A cell read with a warning: the value is kept, the warning is reported with the row."""

    value: object
    message: str


# --- Cell readers: text in, Python value out (or CellError) -----------------------------------


def text(max_length: int) -> Callable[[str], str]:
    def read(value: str) -> str:
        if len(value) > max_length:
            raise CellError(f"is longer than {max_length} characters")
        return value

    return read


def email(value: str) -> str:
    try:
        normalised = normalize_email(value)
    except InvalidIdentifier as exc:
        raise CellError(str(exc)) from None
    if len(normalised) > EMAIL_MAX_LENGTH:  # valid addresses go up to 320 characters
        raise CellError(f"is longer than {EMAIL_MAX_LENGTH} characters")
    return normalised


def phone(value: str) -> str | Warned:
    """Only an impossible number is an error; a possible one that is not valid is kept."""
    try:
        number, warning = phone_for_record(value)
    except InvalidIdentifier as exc:
        raise CellError(str(exc)) from None
    return Warned(number, warning) if warning else number


DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d")


def a_date(value: str) -> date:
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    raise CellError(f"{value!r} is not a date (use YYYY-MM-DD or DD-MM-YYYY)")


def a_datetime(value: str) -> datetime:
    try:
        parsed = parse_datetime(value.replace(" ", "T", 1) if "T" not in value else value)
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.combine(a_date(value), datetime.min.time())
        except CellError:
            raise CellError(f"{value!r} is not a date and time (use YYYY-MM-DD HH:MM)") from None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def a_decimal(value: str) -> Decimal:
    cleaned = re.sub(r"[\s€$£]", "", value)
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")  # 1234,50 written the European way
    cleaned = cleaned.replace(",", "")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise CellError(f"{value!r} is not a number") from None
    if not number.is_finite() or number < 0 or number >= Decimal("1e12"):
        raise CellError(f"{value!r} must be a number from 0 up to 999,999,999,999.99")
    return number.quantize(Decimal("0.01"))


def a_percentage(value: str) -> int:
    try:
        number = int(Decimal(value.rstrip("% ")))
    except (InvalidOperation, ValueError):
        raise CellError(f"{value!r} is not a whole number") from None
    if not 0 <= number <= 100:
        raise CellError(f"{value!r} must be between 0 and 100")
    return number


def choice(choices) -> Callable[[str], str]:
    """Accepts a value or its label, ignoring case ("Customer" or "customer")."""
    lookup = {}
    for value, label in choices:
        lookup[value.lower()] = value
        lookup[str(label).lower()] = value

    def read(value: str) -> str:
        try:
            return lookup[value.strip().lower()]
        except KeyError:
            allowed = ", ".join(v for v, _ in choices)
            raise CellError(f"{value!r} is not one of {allowed}") from None

    return read


def country(value: str) -> str:
    code = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise CellError(f"{value!r} is not a two-letter country code (NL, DE, US...)")
    return code


def domain(value: str) -> str:
    cleaned = web_domain(value)
    if not cleaned:
        raise CellError(f"{value!r} is not a web domain (example.com)")
    return cleaned


def tag_names(value: str) -> list[str]:
    names = [" ".join(part.split()) for part in re.split(r"[,;|]", value)]
    if any(len(name) > 80 for name in names):
        raise CellError("a tag is longer than 80 characters")
    return sorted({name for name in names if name})


def an_id(value: str) -> int:
    if not value.strip().isdigit():
        raise CellError(f"{value!r} is not an id (a whole number)")
    return int(value)


# --- Columns -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One importable column. ``relation`` names how a reference is resolved (the importer
    looks these up per batch); otherwise the value is stored in the model field ``name``."""

    name: str
    read: Callable[[str], object]
    synonyms: tuple[str, ...] = ()
    relation: str | None = None


@dataclass(frozen=True)
class ImportSpec:
    resource: str
    model: type
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    required_for_create: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)

    def column(self, name: str) -> Column:
        return self.by_name[name]

    @property
    def by_name(self) -> dict[str, Column]:
        # Computed once per spec (called per cell during imports).
        cached = self.__dict__.get("_by_name")
        if cached is None:
            cached = {column.name: column for column in self.columns}
            object.__setattr__(self, "_by_name", cached)
        return cached

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]


def header_token(header: str) -> str:
    """Headers compared without case, accents, spaces or punctuation: "E-mail address",
    "e_mail_address" and "EMAIL ADDRESS" are the same column."""
    decomposed = unicodedata.normalize("NFKD", header)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[^a-z0-9]", "", plain.lower())


OWNER = Column(
    "owner", str, ("owner", "contact owner", "account manager", "eigenaar"), relation="user"
)
COMPANY = Column(
    "company",
    text(255),
    ("company", "company name", "organisation", "organization", "bedrijf", "account", "firma"),
    relation="company_by_name",
)
COMPANY_DOMAIN = Column(
    "company_domain", domain, ("company domain", "company website"), relation="company_by_domain"
)
CONTACT_EMAIL = Column(
    "contact_email",
    email,
    ("contact email", "contact e-mail", "contact", "person email"),
    relation="contact_by_email",
)
COUNTRY = Column("country", country, ("country", "land", "country code", "pays"))
TAGS = Column("tags", tag_names, ("tags", "tag", "labels", "label"), relation="tags")
ID = Column("id", an_id, ("id", "record id"))

CONTACTS = ImportSpec(
    resource="contacts",
    model=Contact,
    keys=("email", "external_id", "phone", "id"),
    columns=(
        ID,
        Column(
            "first_name",
            text(120),
            ("first name", "firstname", "given name", "forename", "voornaam", "vorname", "prenom"),
        ),
        Column(
            "last_name",
            text(120),
            ("last name", "surname", "family name", "achternaam", "nachname", "nom", "apellido"),
        ),
        Column(
            "email",
            email,
            ("email", "e-mail address", "email address", "mail", "emailadres", "e-mailadres"),
        ),
        Column(
            "phone",
            phone,
            ("phone", "phone number", "telephone", "mobile", "telefoon", "telefoonnummer", "tel"),
        ),
        Column("street", text(255), ("street", "address", "street address", "adres", "straat")),
        Column("postal_code", text(20), ("postal code", "zip", "zip code", "postcode", "plz")),
        Column("city", text(120), ("city", "town", "plaats", "woonplaats", "stad", "ort")),
        COUNTRY,
        Column(
            "date_of_birth",
            a_date,
            ("date of birth", "birthday", "birth date", "dob", "geboortedatum"),
        ),
        Column("job_title", text(200), ("job title", "title", "position", "functie", "function")),
        Column(
            "lifecycle_stage",
            choice(Contact.LifecycleStage.choices),
            ("lifecycle stage", "lifecycle", "lifecyclestage"),
        ),
        Column(
            "external_id",
            text(255),
            ("external id", "source id", "crm id", "legacy id", "externe id"),
        ),
        COMPANY,
        COMPANY_DOMAIN,
        OWNER,
        TAGS,
    ),
)

COMPANIES = ImportSpec(
    resource="companies",
    model=Company,
    keys=("domain", "name", "id"),
    required_for_create=("name",),
    columns=(
        ID,
        Column("name", text(255), ("name", "company name", "company", "bedrijfsnaam", "bedrijf")),
        Column("domain", domain, ("domain", "website", "web", "url", "company domain")),
        Column("industry", text(120), ("industry", "sector", "branche")),
        Column("size", choice(Company.Size.choices), ("size", "company size", "employees")),
        COUNTRY,
        OWNER,
        TAGS,
    ),
)

CURRENCIES = ("EUR", "USD", "GBP", "CHF", "SEK", "DKK", "NOK", "PLN", "CAD", "AUD", "JPY")

DEALS = ImportSpec(
    resource="deals",
    model=Deal,
    keys=("name", "id"),
    required_for_create=("name", "stage"),
    columns=(
        ID,
        Column("name", text(255), ("name", "deal", "deal name", "opportunity")),
        Column("pipeline", text(120), ("pipeline",), relation="pipeline"),
        Column("stage", text(120), ("stage", "deal stage", "fase"), relation="stage"),
        Column("amount", a_decimal, ("amount", "value", "deal value", "bedrag")),
        Column("currency", choice([(c, c) for c in CURRENCIES]), ("currency", "valuta")),
        Column("probability", a_percentage, ("probability", "win probability", "kans")),
        Column(
            "expected_close_date", a_date, ("expected close date", "close date", "expected close")
        ),
        Column("lost_reason", text(255), ("lost reason", "reason lost")),
        COMPANY,
        COMPANY_DOMAIN,
        CONTACT_EMAIL,
        OWNER,
    ),
)

ACTIVITIES = ImportSpec(
    resource="activities",
    model=Activity,
    keys=("id",),
    required_for_create=("kind", "subject"),
    columns=(
        ID,
        Column("kind", choice(Activity.Kind.choices), ("kind", "type", "activity type", "soort")),
        Column("subject", text(255), ("subject", "title", "onderwerp")),
        Column("body", text(100_000), ("body", "notes", "note", "description", "notitie")),
        Column("due_at", a_datetime, ("due at", "due", "due date")),
        Column("done_at", a_datetime, ("done at", "done", "completed at", "completed")),
        Column("deal", text(255), ("deal", "deal name"), relation="deal_by_name"),
        COMPANY,
        COMPANY_DOMAIN,
        CONTACT_EMAIL,
        OWNER,
    ),
)

SPECS = {spec.resource: spec for spec in (CONTACTS, COMPANIES, DEALS, ACTIVITIES)}

# A custom field's column: "custom.<key>", found by the field's label or key.
CUSTOM = "custom."


def spec_with_custom_fields(spec: ImportSpec) -> ImportSpec:
    """The resource's columns and its custom fields' (contacts, companies, deals), each read
    and checked by the custom fields' own rule."""
    model_name = spec.model._meta.model_name
    if model_name not in MODELS:
        return spec
    columns = tuple(
        Column(
            CUSTOM + field.key, custom_reader(field), (field.label, field.key, CUSTOM + field.key)
        )
        for field in definitions(model_name)
    )
    if not columns:
        return spec
    return replace(spec, columns=spec.columns + columns)


def custom_reader(definition) -> Callable[[str], object]:
    def read(value: str):
        try:
            return custom_value_parse(definition, value)
        except ValueError as exc:
            raise CellError(f"{definition.label} {exc}") from None

    return read


# --- Exports (django-import-export) ----------------------------------------------------------


class SafeExportResource(resources.ModelResource):
    """Exports with formula-looking cells neutralised and, for people without the PII
    permission, personal columns left out."""

    def __init__(self, *args, include_pii: bool = True, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.include_pii = include_pii
        self.user = user  # None: the operator, who sees every record
        self.hidden_links: dict[str, frozenset] = {}
        self.add_custom_fields()

    def before_export(self, queryset, **kwargs):
        super().before_export(queryset, **kwargs)
        if self.user is not None and queryset is not None:
            self.hidden_links = links_out_of_sight(self.user, self._meta.model, queryset)

    def export_field(self, field, instance, **kwargs):
        # A column read through a link (company__name) names no record out of the user's sight.
        link, _, through = (field.attribute or "").partition("__")
        if through and link in self.hidden_links:
            attname = instance._meta.get_field(link).attname
            if getattr(instance, attname) in self.hidden_links[link]:
                return OUT_OF_SIGHT
        return super().export_field(field, instance, **kwargs)

    def export_resource(self, instance, selected_fields=None, **kwargs):
        row = super().export_resource(instance, selected_fields, **kwargs)
        # the one rule of cdphub.csv_export, for the XLSX files as much as for CSV
        return [neutralise(value) for value in row]

    def get_export_fields(self, selected_fields=None):
        export_fields = super().get_export_fields(selected_fields)
        if self.include_pii:
            return export_fields
        hidden = set(getattr(self._meta.model, "PII_FIELDS", ()))
        return [f for f in export_fields if f.attribute not in hidden]

    def add_custom_fields(self) -> None:
        """A column per custom field, headed ``custom.<key>`` (which imports back); a
        contact's values are personal data."""
        model_name = self._meta.model._meta.model_name
        if model_name not in MODELS or (self._meta.model is Contact and not self.include_pii):
            return
        for definition in definitions(model_name):
            self.fields[CUSTOM + definition.key] = ie_fields.Field(
                attribute=f"custom_fields__{definition.key}",
                column_name=CUSTOM + definition.key,
                widget=CustomValueWidget(),
                readonly=True,
            )


class CustomValueWidget(ie_widgets.Widget):
    """A custom field's value as the import reads it back: yes / no, choices joined by ", "."""

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return str(value)


class ContactResource(SafeExportResource):
    company = ie_fields.Field(attribute="company__name", column_name="company")
    owner = ie_fields.Field(attribute="owner__username", column_name="owner")

    class Meta:
        model = Contact
        fields = (
            "id",
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
            "lifecycle_stage",
            "external_id",
            "company",
            "owner",
            "created_at",
            "updated_at",
        )


class CompanyResource(SafeExportResource):
    owner = ie_fields.Field(attribute="owner__username", column_name="owner")

    class Meta:
        model = Company
        fields = ("id", "name", "domain", "industry", "size", "country", "owner", "created_at")


class DealResource(SafeExportResource):
    pipeline = ie_fields.Field(attribute="pipeline__name", column_name="pipeline")
    stage = ie_fields.Field(attribute="stage__name", column_name="stage")
    company = ie_fields.Field(attribute="company__name", column_name="company")
    owner = ie_fields.Field(attribute="owner__username", column_name="owner")

    class Meta:
        model = Deal
        fields = (
            "id",
            "name",
            "pipeline",
            "stage",
            "amount",
            "currency",
            "probability",
            "status",
            "expected_close_date",
            "lost_reason",
            "company",
            "owner",
        )


class ActivityResource(SafeExportResource):
    owner = ie_fields.Field(attribute="owner__username", column_name="owner")

    class Meta:
        model = Activity
        fields = ("id", "kind", "subject", "body", "contact", "deal", "company", "owner", "due_at")
