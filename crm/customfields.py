"""Custom fields of contacts, companies and deals: the one place their values are checked.

An administrator defines a field (``CustomField``: label, key, type, choices, required); a
record keeps its values in ``custom_fields`` by key, in JSON: text, whole numbers and yes/no
and decimals as JSON numbers, dates as ``YYYY-MM-DD``, several choices as a
list. The admin's forms, the API and imports all call ``custom_values_clean``; changing or
deleting a definition that records use is refused with what uses it, or done explicitly
(``custom_field_values_remove``)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Func, JSONField, Model, Q, Value
from django.utils.text import slugify

from cdphub.audit import audit_record
from cdphub.deletion import DeleteProtected
from crm.models import Company, Contact, CustomField, Deal

MODELS: dict[str, type[Model]] = {"contact": Contact, "company": Company, "deal": Deal}
TEXT_MAX_LENGTH = 1000
YES = {"yes", "y", "true", "1", "ja", "j", "oui", "x"}
NO = {"no", "n", "false", "0", "nee", "non"}


class CustomValuesInvalid(ValueError):
    """Values that do not fit their definitions: ``errors`` says why, by key."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


def definitions(model: type[Model] | str) -> list[CustomField]:
    """The custom fields of a model (class or name), in their order."""
    name = model if isinstance(model, str) else model._meta.model_name
    return list(CustomField.objects.filter(model=name).order_by("order", "label"))


def custom_value_parse(definition: CustomField, value):
    """One value as the record keeps it (None: no value), from JSON or from a cell's text.
    Raises ValueError with what was expected."""
    if value is None or (isinstance(value, str | list) and not value):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    return PARSERS[definition.type](definition, value)


def _text(definition, value) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("expects text")
    text = str(value)
    if len(text) > TEXT_MAX_LENGTH:
        raise ValueError(f"is longer than {TEXT_MAX_LENGTH} characters")
    return text


def _number(definition, value) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expects a whole number, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expects a whole number, not {value!r}") from None


def _decimal(definition, value) -> int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"expects a decimal number, not {value!r}")
    try:
        number = Decimal(value.replace(",", ".") if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"expects a decimal number, not {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expects a decimal number, not {value!r}")
    if number == number.to_integral_value():
        return int(number)
    kept = float(number)  # a JSON number, so rules and filters compare it as a number
    if Decimal(repr(kept)) != number.normalize():
        raise ValueError(f"{value!r} has more digits than a decimal field keeps (15)")
    return kept


def _date(definition, value) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"expects a date as YYYY-MM-DD, not {value!r}")


def _yes_no(definition, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    raise ValueError(f"expects yes or no, not {value!r}")


def _choice(definition, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expects one of: {', '.join(definition.choices)}")
    by_lower = {choice.lower(): choice for choice in definition.choices}
    try:
        return by_lower[value.strip().lower()]
    except KeyError:
        raise ValueError(f"{value!r} is not one of: {', '.join(definition.choices)}") from None


def _multi_choice(definition, value) -> list[str]:
    if isinstance(value, str):
        value = [part for part in value.replace(";", ",").split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(f"expects a list of: {', '.join(definition.choices)}")
    chosen = [_choice(definition, item) for item in value]
    return [choice for choice in definition.choices if choice in chosen]  # their order, once


PARSERS = {
    CustomField.Type.TEXT: _text,
    CustomField.Type.NUMBER: _number,
    CustomField.Type.DECIMAL: _decimal,
    CustomField.Type.DATE: _date,
    CustomField.Type.YES_NO: _yes_no,
    CustomField.Type.CHOICE: _choice,
    CustomField.Type.MULTI_CHOICE: _multi_choice,
}


def custom_values_clean(
    model: type[Model] | str,
    values: object,
    *,
    current: dict | None = None,
    replace: bool = False,
    fields: list[CustomField] | None = None,
) -> dict:
    """A record's new ``custom_fields``: ``values`` (key -> value; null or "" clears one)
    merged into ``current`` (or replacing them, ``replace``), each checked against its
    definition; keys no definition has are refused, and so is a required field left without
    a value. Raises ``CustomValuesInvalid``, by key."""
    if not isinstance(values, dict):
        raise CustomValuesInvalid({"custom_fields": "expects an object of key: value"})
    fields = definitions(model) if fields is None else fields
    by_key = {field.key: field for field in fields}
    errors = {}
    result = {} if replace else {k: v for k, v in (current or {}).items() if k in by_key}
    for key, value in values.items():
        definition = by_key.get(key)
        if definition is None:
            known = ", ".join(by_key) or "none are defined"
            errors[key] = f"is not a custom field of this record (its fields: {known})"
            continue
        try:
            parsed = custom_value_parse(definition, value)
        except ValueError as exc:
            errors[key] = f"{definition.label} {exc}"
            continue
        if parsed is None:
            result.pop(key, None)
        else:
            result[key] = parsed
    for field in fields:
        if field.required and field.key not in result and field.key not in errors:
            errors[field.key] = f"{field.label} is required"
    if errors:
        raise CustomValuesInvalid(errors)
    return result


# --- Definitions ---------------------------------------------------------------------------------


def records_using(field: CustomField, q: Q | None = None) -> int:
    """How many records have a value for ``field`` (matching ``q`` when given)."""
    rows = MODELS[field.model].objects.filter(custom_fields__has_key=field.key)
    return rows.filter(q).count() if q is not None else rows.count()


def custom_field_check(field: CustomField) -> None:
    """Refuse a definition that would leave stored values behind, saying how many records it
    concerns: another record type, key or type while records have values, choices removed
    that records use, required while records have no value. Choices are kept only by choice
    fields."""
    if field.type not in (CustomField.Type.CHOICE, CustomField.Type.MULTI_CHOICE):
        field.choices = []
    elif not field.choices:
        raise ValidationError({"choices": "A choice field needs its choices, one per line."})
    if field.pk is not None:
        _change_check(field, CustomField.objects.get(pk=field.pk))
    elif field.required and MODELS[field.model].objects.exists():
        raise ValidationError(
            {
                "required": "Existing records have no value yet: add the field as optional, "
                "fill it in (an import can), then make it required."
            }
        )


@transaction.atomic
def custom_field_save(*, field: CustomField, actor=None) -> CustomField:
    """Create or change a definition, checked by ``custom_field_check``."""
    if field.pk is not None:
        CustomField.objects.select_for_update().filter(pk=field.pk).first()
    field.full_clean()
    custom_field_check(field)
    created = field.pk is None
    field.save()
    audit_record(
        actor=actor,
        action="custom_field.create" if created else "custom_field.change",
        obj=field,
        note=f"{field.model}.{field.key} ({field.type})",
    )
    return field


def _change_check(field: CustomField, stored: CustomField) -> None:
    if (field.model, field.key, field.type) != (stored.model, stored.key, stored.type):
        used = records_using(stored)
        if used:
            raise ValidationError(
                f"{used} record(s) have a value for {stored.label!r}: its record type, key and "
                "type cannot change while they do. Remove its values first (the Remove values "
                "action), or add a new field and import the values into it."
            )
    removed = set(stored.choices) - set(field.choices)
    if removed and field.type in (CustomField.Type.CHOICE, CustomField.Type.MULTI_CHOICE):
        key = f"custom_fields__{stored.key}"
        lookup = Q(**{f"{key}__in": sorted(removed)})
        if field.type == CustomField.Type.MULTI_CHOICE:
            lookup = Q()
            for choice in removed:
                lookup |= Q(**{f"{key}__contains": [choice]})
        used = records_using(stored, lookup)
        if used:
            raise ValidationError(
                {
                    "choices": f"{used} record(s) use {', '.join(sorted(removed))}: change their "
                    "value first, or keep the choice."
                }
            )
    if field.required and not stored.required:
        missing = MODELS[field.model].objects.exclude(custom_fields__has_key=field.key).count()
        if missing:
            raise ValidationError(
                {
                    "required": f"{missing} record(s) have no value for {field.label!r}: fill them "
                    "in first (an import can), then make it required."
                }
            )


class CustomFieldInUse(DeleteProtected):
    """Records have values for the field: removing them comes first, explicitly."""

    def __init__(self, field: CustomField, used: int):
        super().__init__(field, {str(MODELS[field.model]._meta.verbose_name_plural): used})
        self.args = (
            f"{used} record(s) have a value for {field.label!r}: remove the values first (the "
            "Remove values action), then delete the field.",
        )


@transaction.atomic
def custom_field_delete(*, field: CustomField, actor=None) -> None:
    """Delete a definition no record has a value for; otherwise ``CustomFieldInUse``."""
    used = records_using(field)
    if used:
        raise CustomFieldInUse(field, used)
    audit_record(
        actor=actor, action="custom_field.delete", obj=field, note=f"{field.model}.{field.key}"
    )
    field.delete()


@transaction.atomic
def custom_field_values_remove(*, field: CustomField, actor=None) -> int:
    """Remove ``field``'s values from every record (explicit, audited); returns how many."""
    model = MODELS[field.model]
    removed = model.objects.filter(custom_fields__has_key=field.key).update(
        custom_fields=Func(
            "custom_fields",
            Value(field.key),
            function="",
            arg_joiner=" - ",
            template="(%(expressions)s)",
            output_field=JSONField(),
        )
    )
    audit_record(
        actor=actor,
        action="custom_field.values_remove",
        obj=field,
        note=f"{removed} {field.model}(s)",
    )
    return removed


# --- Created from an import's column mapping -----------------------------------------------------

NEW = "new:"
CREATABLE_TYPES = ("text", "number", "decimal", "date", "yes_no")


def mapped_custom_fields_create(
    model_name: str, overrides: dict[str, str], *, actor=None
) -> dict[str, str]:
    """An import's column mapping with each ``Header=new:<type>`` made a custom field of that
    type (labelled by the header; an existing one of that key and type is used) and mapped to
    it. Raises ``ValidationError`` saying what is wrong: a type a column cannot create (a
    choice field needs its choices: define it under Custom fields), a key taken by a field of
    another type, a person who may not define custom fields, records that cannot have them."""
    wanted = {h: f.removeprefix(NEW) for h, f in overrides.items() if f.startswith(NEW)}
    if not wanted:
        return overrides
    if model_name not in MODELS:
        raise ValidationError(f"{model_name}s have no custom fields: map the columns to fields.")
    if actor is not None and not actor.has_perm("crm.add_customfield"):
        raise ValidationError("Creating custom fields needs the permission to add them.")
    mapped = dict(overrides)
    for header, kind in wanted.items():
        if kind not in CREATABLE_TYPES:
            raise ValidationError(
                f"{header}={NEW}{kind}: a column can create a custom field of type "
                f"{', '.join(CREATABLE_TYPES)}; define a choice field under Custom fields first."
            )
        key = slugify(header).replace("-", "_")[:50] or "field"
        field = CustomField.objects.filter(model=model_name, key=key).first()
        if field is None:
            field = CustomField(model=model_name, key=key, label=header[:100], type=kind)
            custom_field_save(field=field, actor=actor)
        elif field.type != kind:
            raise ValidationError(
                f"{header}={NEW}{kind}: the custom field {key!r} exists already, as "
                f"{field.get_type_display()}; map the column to custom.{key}."
            )
        mapped[header] = f"custom.{key}"
    return mapped
