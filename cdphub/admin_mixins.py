"""Shared admin behaviour: personal data masked for roles without the PII permission, and
changelists that stay fast on big tables."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import label_for_field
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from cdphub.paginators import EstimatedCountPaginator
from cdphub.pii import can_view_pii, mask_json, mask_value
from cdphub.saved_views import (
    VIEW_VAR,
    view_columns,
    view_delete,
    view_find,
    view_query,
    view_save,
    views_visible,
)


class FastChangeListMixin:
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50


# What Django's admin.display sets on a display function, copied onto its two versions.
DISPLAY_ATTRIBUTES = ("short_description", "admin_order_field", "boolean", "empty_value_display")


class PiiMaskedAdminMixin:
    """``pii_fields`` are shown masked (list and form) and are not searchable or editable for
    users without the PII permission; ``pii_json_fields`` are shown with personal keys masked.

    ``pii_displays`` are display methods that show personal data, written as
    ``def name(self, obj, pii: bool)``: users who may see personal data get ``name``, the
    others ``name_masked``, chosen per request like the fields. Django keeps one admin instance
    per model for every request and thread, so whether this request may see personal data is
    never stored on it: it is decided from the request in each hook."""

    pii_fields: tuple[str, ...] = ()
    pii_json_fields: tuple[str, ...] = ()
    pii_displays: tuple[str, ...] = ()
    # Whether this model's records are named by personal data (a contact by its full name):
    # then links to them from other pages, and autocomplete answers, name them by kind and id
    # for those who may not see personal data.
    label_is_personal = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in (*self.pii_fields, *self.pii_json_fields):
            setattr(self, masked_name(name), self._masked_display(name))
        for name in self.pii_displays:
            setattr(self, masked_name(name), self._pii_display(name, pii=False))
            setattr(self, name, self._pii_display(name, pii=True))
        for field in self.model._meta.concrete_fields:
            named = field.name in (*self.pii_fields, *self.pii_json_fields)
            if field.is_relation and field.related_model is not None and not named:
                setattr(self, masked_name(field.name), self._nameless_link(field))

    def _nameless_link(self, field):
        meta = field.related_model._meta

        @admin.display(description=field.verbose_name)
        def display(obj):
            related_id = getattr(obj, field.attname)
            if related_id is None:
                return "-"
            label = f"{capfirst(meta.verbose_name)} #{related_id}"
            try:
                url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[related_id])
            except NoReverseMatch:
                return label
            return format_html('<a href="{}">{}</a>', url, label)

        return display

    def links_to_personal_labels(self) -> set[str]:
        """This model's foreign keys to records named by personal data."""
        registry = self.admin_site._registry
        return {
            field.name
            for field in self.model._meta.concrete_fields
            if field.is_relation
            and getattr(registry.get(field.related_model), "label_is_personal", False)
        }

    def _pii_display(self, name: str, *, pii: bool):
        method = getattr(type(self), name)

        def display(obj):
            return method(self, obj, pii=pii)

        for attribute in DISPLAY_ATTRIBUTES:
            if hasattr(method, attribute):
                setattr(display, attribute, getattr(method, attribute))
        return display

    def _masked_display(self, name: str):
        model_field = self.model._meta.get_field(name)
        is_json = name in self.pii_json_fields

        @admin.display(description=model_field.verbose_name)
        def display(obj):
            value = getattr(obj, name)
            if is_json:
                return format_html("<code>{}</code>", mask_json(name, value))
            return mask_value(value)

        return display

    def may_view_pii(self, request) -> bool:
        return can_view_pii(request.user)

    def _masked(self, request, names, *, links: bool = True):
        """``names`` as shown to this request. ``links``: also links to records named by
        personal data (lists and existing records; an add form keeps its fields to fill)."""
        if self.may_view_pii(request):
            return list(names)
        hidden = {*self.pii_fields, *self.pii_json_fields, *self.pii_displays}
        if links:
            hidden |= self.links_to_personal_labels()
        return [masked_name(name) if name in hidden else name for name in names]

    def get_list_display(self, request):
        return self._masked(request, super().get_list_display(request))

    def get_list_display_links(self, request, list_display):
        links = super().get_list_display_links(request, list_display)
        return self._masked(request, links) if links else links

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        if self.may_view_pii(request):
            return fields
        hidden = {*self.pii_fields, *self.pii_json_fields}
        return [f for f in fields if f.lstrip("=^@").split("__")[0] not in hidden]

    def get_fields(self, request, obj=None):
        return self._masked(request, super().get_fields(request, obj), links=obj is not None)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self.may_view_pii(request):
            return fieldsets
        links = obj is not None
        return [
            (title, {**options, "fields": self._masked(request, options["fields"], links=links)})
            for title, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if self.may_view_pii(request):
            return readonly
        links = self.links_to_personal_labels() if obj is not None else set()
        masked = [masked_name(n) for n in (*self.pii_fields, *self.pii_json_fields, *links)]
        return self._masked(request, readonly, links=obj is not None) + masked

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or ())
        if self.may_view_pii(request):
            return exclude or None
        links = self.links_to_personal_labels() if obj is not None else set()
        return [*exclude, *self.pii_fields, *self.pii_json_fields, *links]


def masked_name(name: str) -> str:
    return f"{name}_masked"


class ViewOnlyAdminMixin:
    """For records written only by services (ledgers, audit trails, suppression hashes): the
    admin shows them; no one adds, changes or deletes them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LabelledSplitDateTime(widgets.AdminSplitDateTime):
    """The admin's date + time inputs; the field's label names only the first, so each input
    says what it is to screen readers."""

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.widgets[0].attrs.setdefault("aria-label", "Date")
        self.widgets[1].attrs.setdefault("aria-label", "Time")


class AuditHistoryMixin:
    """The history page of a record lists its audit trail (``cdphub.audit``) above the
    admin's own log of edits made through its forms."""

    object_history_template = "admin/cdphub/object_history.html"

    def history_view(self, request, object_id, extra_context=None):
        from cdphub.models import AuditEntry

        entries = AuditEntry.objects.filter(
            object_type=self.model._meta.label_lower, object_id=str(object_id)
        ).select_related(None)[:200]
        extra_context = {**(extra_context or {}), "audit_entries": entries}
        return super().history_view(request, object_id, extra_context)


method_decorator_post = method_decorator(require_POST)


class SavedViewChangeList(ChangeList):
    """Keeps the saved view's parameter in every link it makes (sorting, paging, filters)
    without reading it as a filter."""

    def get_filters_params(self, params=None):
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(VIEW_VAR, None)
        return lookup_params


def column_key(column) -> str:
    """A list column's name: list_display holds field and method names, and sometimes the
    display functions themselves."""
    return column if isinstance(column, str) else column.__name__


class SavedViewsMixin:
    """Saved views on every list (``cdphub.saved_views``): a bar above the list to apply one,
    save the current filters and a choice of columns under a name, or delete one's own.

    It sits below ``PiiMaskedAdminMixin`` in the order of classes: a view chooses among the
    list's own columns, and masking then applies to whatever it chose."""

    def get_changelist(self, request, **kwargs):
        return SavedViewChangeList

    def list_columns(self, request) -> list:
        """The list's own columns for this request, before a saved view chooses."""
        return list(super().get_list_display(request))

    def saved_view(self, request):
        """The view this request's list is shown through, if it names one the user may apply.
        Looked up once per request: the admin asks for the columns several times."""
        if VIEW_VAR not in request.GET:
            return None
        cache = request.__dict__.setdefault("_saved_views", {})
        label = self.opts.label_lower
        if label not in cache:
            cache[label] = view_find(request.user, label, request.GET[VIEW_VAR])
        return cache[label]

    def get_list_display(self, request):
        columns = self.list_columns(request)
        view = self.saved_view(request)
        if view is None:
            return columns
        by_key = {column_key(column): column for column in columns}
        return [by_key[key] for key in view_columns(view, list(by_key))]

    def get_list_display_links(self, request, list_display):
        links = super().get_list_display_links(request, list_display)
        shown = {column_key(column) for column in list_display}
        if links and self.saved_view(request) is not None:
            kept = [
                link for link in links if link in shown or masked_name(column_key(link)) in shown
            ]
            return kept or list(list_display)[:1]
        return links

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("views/", wrap(self.saved_view_save), name="{}_{}_saveview".format(*info)),
            path(
                "views/<int:view_id>/delete/",
                wrap(self.saved_view_delete),
                name="{}_{}_deleteview".format(*info),
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        # Not in the pop-up lists that pick a related record.
        if IS_POPUP_VAR not in request.GET and self.has_view_or_change_permission(request):
            extra_context = {
                **(extra_context or {}),
                "saved_views": self.saved_views_context(request),
            }
        return super().changelist_view(request, extra_context)

    def saved_views_context(self, request) -> dict:
        label = self.opts.label_lower
        current = self.saved_view(request)
        query = view_query(request.GET.urlencode())
        shown = {column_key(c) for c in self.get_list_display(request)}
        columns = []
        for column in self.list_columns(request):
            key = column_key(column)
            columns.append((key, label_for_field(column, self.model, self), key in shown))
        views = [
            (view, self.view_url(view.query, view.pk))
            for view in views_visible(request.user, label)
        ]
        mine = current is not None and current.owner_id == request.user.pk
        return {
            "views": views,
            "current": current,
            "mine": mine,
            "delete_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_deleteview",
                args=[current.pk],
                current_app=self.admin_site.name,
            )
            if mine
            else "",
            "default_url": self.view_url(query),
            "columns": columns,
            "query": query,
            "save_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_saveview",
                current_app=self.admin_site.name,
            ),
        }

    def view_url(self, query: str, view_id: int | None = None) -> str:
        changelist = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        parts = [part for part in (query, f"{VIEW_VAR}={view_id}" if view_id else "") if part]
        return changelist + ("?" + "&".join(parts) if parts else "")

    @method_decorator_post
    def saved_view_save(self, request):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        query = request.POST.get("query", "")
        try:
            view = view_save(
                request.user,
                list_label=self.opts.label_lower,
                name=request.POST.get("name", ""),
                query_string=query,
                columns=request.POST.getlist("columns"),
                available=[column_key(c) for c in self.list_columns(request)],
                shared=request.POST.get("shared") == "on",
            )
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, f"The view was not saved: {message}")
            current = request.POST.get("current", "")
            back = int(current) if current.isdigit() else None
            return HttpResponseRedirect(self.view_url(view_query(query), back))
        messages.success(request, f"Saved the view “{view.name}”.")
        return HttpResponseRedirect(self.view_url(view.query, view.pk))

    @method_decorator_post
    def saved_view_delete(self, request, view_id: int):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        view = view_find(request.user, self.opts.label_lower, view_id)
        if view is None:
            messages.error(request, "That view does not exist any more.")
            return HttpResponseRedirect(self.view_url(""))
        try:
            view_delete(request.user, view)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return HttpResponseRedirect(self.view_url(view.query, view.pk))
        messages.success(request, f"Deleted the view “{view.name}”.")
        return HttpResponseRedirect(self.view_url(view.query))


class ReadableModelAdmin(
    FastChangeListMixin, AuditHistoryMixin, PiiMaskedAdminMixin, SavedViewsMixin, admin.ModelAdmin
):
    """The base of every model admin in cdphub."""

    formfield_overrides = {
        # A URL typed without a scheme is read as https.
        models.URLField: {"assume_scheme": "https"},
        models.DateTimeField: {"widget": LabelledSplitDateTime},
    }


def presence_filter(field: str, title: str, present: str, absent: str):
    """A list filter on whether ``field`` has a value, in the words of what that means
    ("done" / "open") rather than the admin's "Not empty" / "Empty"."""

    class PresenceFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            return [("yes", present), ("no", absent)]

        def queryset(self, request, queryset):
            if self.value() in ("yes", "no"):
                return queryset.filter(**{f"{field}__isnull": self.value() == "no"})
            return queryset

    PresenceFilter.title = title
    return PresenceFilter


def live_preview_payload(model_admin, request) -> tuple[dict | None, JsonResponse | None]:
    """The JSON object a form's live preview POSTs, or the answer refusing it: only those who
    may add or change the model's records may ask, and a body that is not a JSON object is a
    400 saying so."""
    if request.method != "POST" or not (
        model_admin.has_add_permission(request) or model_admin.has_change_permission(request)
    ):
        return None, JsonResponse({"errors": ["not allowed"]}, status=403)
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        return None, JsonResponse({"errors": ["the request is not valid JSON"]}, status=400)
    if not isinstance(payload, dict):
        return None, JsonResponse({"errors": ["expected a JSON object"]}, status=400)
    return payload, None
