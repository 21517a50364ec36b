"""What every CRM admin shares: a sales team sees only its records, and the records they link to
are named only when in sight; exports open safely in a spreadsheet."""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.contrib.admin import widgets
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, ValidationError
from django.db.models import Case, When
from django.http import Http404
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.forms import ExportForm

from cdphub.pii import can_view_pii
from crm import services
from crm.models import (
    OUT_OF_SIGHT,
)
from crm.selectors import (
    VISIBILITY_RULES,
    links_out_of_sight,
    visible_q,
    visible_to,
)


class SafeExportMixin(ExportMixin):
    """CSV/XLSX export of the filtered list: formula cells neutralised, personal columns only
    for people with the PII permission, and every export logged."""

    export_formats = [CSV, XLSX]
    export_form_class = ExportForm

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    def get_export_resource_kwargs(self, request, **kwargs):
        return {"include_pii": can_view_pii(request.user), "user": request.user}

    def get_export_data(self, file_format, request, queryset, **kwargs):
        data = super().get_export_data(file_format, request, queryset, **kwargs)
        services.data_export_record(
            user=request.user,
            resource=self.opts.model_name,
            row_count=queryset.count(),
            file_format=file_format.get_title(),
            included_pii=can_view_pii(request.user) and hasattr(self.model, "PII_FIELDS"),
        )
        return data


# --- Sales team visibility: the records, and the records they link to ---------------------------


def restrict_to_visible(formfield, user):
    """A form field choosing CRM records with a visibility rule offers and accepts only those
    ``user`` sees; an id of another one is refused like one that does not exist."""
    queryset = getattr(formfield, "queryset", None)
    if queryset is None or queryset.model not in VISIBILITY_RULES:
        return formfield
    formfield.every_record = queryset  # for the link a record already has: see keep_held_links
    formfield.queryset = visible_to(user, queryset)
    return formfield


def keep_held_links(form: forms.BaseModelForm) -> None:
    """A record keeps the links it has to records now out of the user's sight: the field
    offers them too, named ``OUT_OF_SIGHT``, so saving the form changes nothing it did not
    show (the user may still clear or replace the link). Only what the record holds in the
    database is kept, never an id from the request."""
    instance = form.instance
    if instance.pk is None or instance._state.adding:
        return
    for name, field in form.fields.items():
        every = getattr(field, "every_record", None)
        if every is None:
            continue
        try:
            model_field = instance._meta.get_field(name)
        except FieldDoesNotExist:
            continue  # a declared field of the form's own
        if not model_field.is_relation:
            continue
        if model_field.many_to_many:
            key = "pk"
            held = set(getattr(instance, name).values_list(key, flat=True))
        else:
            key = model_field.target_field.attname
            held = {getattr(instance, model_field.attname)} - {None}
        if not held:
            continue
        seen = set(field.queryset.filter(**{f"{key}__in": held}).values_list(key, flat=True))
        hidden = frozenset(held - seen)
        if hidden:
            field.queryset = field.queryset | every.filter(**{f"{key}__in": hidden})
            field.label_from_instance = out_of_sight_label(field.label_from_instance, key, hidden)


def out_of_sight_label(label, key: str, hidden: frozenset):
    def label_from_instance(obj) -> str:
        return OUT_OF_SIGHT if getattr(obj, key) in hidden else label(obj)

    return label_from_instance


def keeping_held_links(form_class: type[forms.BaseModelForm]) -> type[forms.BaseModelForm]:
    def __init__(self, *args, **kwargs):
        form_class.__init__(self, *args, **kwargs)
        keep_held_links(self)

    return type(form_class.__name__, (form_class,), {"__init__": __init__})


class VisibleRawIdWidget(widgets.ForeignKeyRawIdWidget):
    """The raw id input names the chosen record only when the field offers it: a typed id of
    a hidden record shows nothing, a link the record keeps shows ``OUT_OF_SIGHT``."""

    def label_and_url_for_value(self, value):
        field = self.choices.field
        key = self.rel.get_related_field().name
        try:
            obj = field.queryset.get(**{key: value})
        except (ValueError, TypeError, ObjectDoesNotExist, ValidationError):
            return "", ""
        label = field.label_from_instance(obj)
        if label == OUT_OF_SIGHT:
            return label, ""
        return super().label_and_url_for_value(value)


def mark_links_out_of_sight(user, records: Iterable) -> None:
    """Marks, on loaded ``records``, the linked CRM records ``user`` does not see, which then
    show as ``OUT_OF_SIGHT`` instead of their name (list columns, read-only and masked fields)."""
    records = list(records)
    if not records:
        return
    opts = records[0]._meta
    for name, ids in links_out_of_sight(user, type(records[0]), records).items():
        attname = opts.get_field(name).attname
        for record in records:
            if getattr(record, attname) in ids:
                getattr(record, name).out_of_sight = True


class PersonChoiceField(forms.ModelChoiceField):
    """A select of the people who use the admin, by name, the one choosing first as "me"."""

    def __init__(self, *args, me=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.me = me
        if me is not None:
            self.queryset = self.queryset.order_by(
                Case(When(pk=me.pk, then=0), default=1), "first_name", "last_name", "username"
            )

    def label_from_instance(self, person):
        name = person.get_full_name() or person.get_username()
        return f"me ({name})" if self.me is not None and person.pk == self.me.pk else name


class VisibleLinksMixin:
    """Every link to a CRM record with a visibility rule (foreign key or many-to-many; select,
    autocomplete or raw id input) offers and accepts only the records the user sees. An owner
    is picked by name from the people who use the admin, "me" first (and by default on a new
    record), not typed as an id."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "owner" and db_field.related_model is get_user_model():
            people = get_user_model().objects.filter(is_active=True, is_staff=True)
            kwargs.setdefault("queryset", people)
            kwargs["form_class"] = PersonChoiceField
            return db_field.formfield(me=request.user, **kwargs)
        raw_id = db_field.name in self.raw_id_fields
        autocomplete = db_field.name in self.get_autocomplete_fields(request)
        if db_field.related_model in VISIBILITY_RULES and raw_id and not autocomplete:
            kwargs.setdefault(
                "widget",
                VisibleRawIdWidget(
                    db_field.remote_field, self.admin_site, using=kwargs.get("using")
                ),
            )
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return restrict_to_visible(formfield, request.user)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        return restrict_to_visible(formfield, request.user)


class VisibleLinksAdminMixin(VisibleLinksMixin):
    """The base of every CRM model admin: links in its form as above, kept when already held
    (``keep_held_links``), and linked records out of sight unnamed in its list and pages."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        return keeping_held_links(super().get_form(request, obj, change=change, **kwargs))

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if any(field.name == "owner" for field in self.model._meta.fields):
            initial.setdefault("owner", request.user.pk)
        return initial

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        mark_links_out_of_sight(request.user, changelist.result_list)
        return changelist

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            mark_links_out_of_sight(request.user, [obj])
        return super().render_change_form(request, context, add, change, form_url, obj)


class VisibleLinksInlineMixin(VisibleLinksMixin):
    """The same for the rows of an inline."""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        user = request.user

        class LinksOutOfSightFormSet(formset):
            form = keeping_held_links(formset.form)

            def get_queryset(self):
                rows = super().get_queryset()
                if not getattr(self, "links_marked", False):
                    self.links_marked = True
                    mark_links_out_of_sight(user, rows)
                return rows

        return LinksOutOfSightFormSet


class VisibleRecordsMixin:
    """Only the records the user may see (sales team visibility, ``crm.selectors.visible_to``).
    The admin's list, counts, filters, actions, exports and the autocompletes of other pages
    all start from ``get_queryset``, so they all follow it."""

    def get_queryset(self, request):
        return visible_to(request.user, super().get_queryset(request))


class VisibleRecordsInlineMixin(VisibleLinksInlineMixin, VisibleRecordsMixin):
    """An inline of CRM records: only the visible ones, and their links as above."""


class VisibleRecordsAdminMixin(VisibleLinksAdminMixin, VisibleRecordsMixin):
    """A model admin of CRM records: only the visible ones, their links as above, and a record
    out of sight is a 404 on its change, delete and history pages, the same as one that does
    not exist (Django would redirect to the index and say so)."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with id {object_id}.")
        return obj


def visible_count(request, model, prefix: str) -> dict:
    """``filter=`` for a Count of related CRM records, when the user's view is limited."""
    condition = visible_q(request.user, model, prefix)
    return {"filter": condition} if condition else {}
