"""Custom fields in the admin: their definitions (CRM -> Custom fields), and the form fields,
list filters and fieldset they add to the contact, company and deal pages."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpResponseRedirect

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.pii import can_view_pii
from crm.customfields import (
    CustomFieldInUse,
    CustomValuesInvalid,
    custom_field_check,
    custom_field_delete,
    custom_field_save,
    custom_field_values_remove,
    custom_values_clean,
    definitions,
    records_using,
)
from crm.models import Contact, CustomField

PREFIX = "custom__"


class CustomFieldForm(forms.ModelForm):
    choices = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For a choice field: the values it offers, one per line.",
    )

    class Meta:
        model = CustomField
        fields = ["model", "label", "key", "type", "choices", "required", "help_text", "order"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["choices"] = "\n".join(self.instance.choices or [])

    def clean_choices(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["choices"].splitlines()]
        return list(dict.fromkeys(line for line in lines if line))

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        try:
            custom_field_check(self.instance)
        except ValidationError as refused:
            self.add_error(None, refused)


@admin.register(CustomField)
class CustomFieldAdmin(ReadableModelAdmin):
    form = CustomFieldForm
    # How many records have a value is counted on a field's page only: on a big table each
    # count reads it whole, once per field of the list.
    list_display = ["label", "model", "key", "type", "required", "order"]
    readonly_fields = ["records_with_a_value"]
    list_filter = ["model", "type", "required"]
    search_fields = ["label", "key"]
    actions = ["remove_values"]

    @admin.display(description="records with a value")
    def records_with_a_value(self, field):
        return records_using(field) if field.pk else 0

    def save_model(self, request, obj, form, change):
        custom_field_save(field=obj, actor=request.user)

    def delete_model(self, request, obj):
        custom_field_delete(field=obj, actor=request.user)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except CustomFieldInUse as in_use:
            self.message_user(request, str(in_use), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each checked for values
        return actions

    @admin.action(
        description="Remove the selected fields' values from every record",
        permissions=["change"],
    )
    def remove_values(self, request, queryset):
        for field in queryset:
            removed = custom_field_values_remove(field=field, actor=request.user)
            self.message_user(request, f"{field}: values removed from {removed} record(s).")


def form_field(definition: CustomField) -> forms.Field:
    """The form field a definition shows as; the values are checked by the service."""
    common = {"label": definition.label, "required": definition.required}
    common["help_text"] = definition.help_text
    kind = definition.type
    if kind == CustomField.Type.NUMBER:
        return forms.IntegerField(**common)
    if kind == CustomField.Type.DECIMAL:
        return forms.DecimalField(**common)
    if kind == CustomField.Type.DATE:
        return forms.DateField(widget=admin.widgets.AdminDateWidget, **common)
    if kind == CustomField.Type.YES_NO:
        choices = [("", "-"), ("yes", "Yes"), ("no", "No")]
        return forms.ChoiceField(choices=choices, **common)
    if kind == CustomField.Type.CHOICE:
        choices = [("", "-"), *((c, c) for c in definition.choices)]
        return forms.ChoiceField(choices=choices, **common)
    if kind == CustomField.Type.MULTI_CHOICE:
        return forms.MultipleChoiceField(
            choices=[(c, c) for c in definition.choices],
            widget=forms.CheckboxSelectMultiple,
            **common,
        )
    return forms.CharField(max_length=1000, **common)


def initial_value(definition: CustomField, value):
    if definition.type == CustomField.Type.YES_NO and value is not None:
        return "yes" if value else "no"
    return value


class CustomFieldsFormMixin:
    """Reads and writes the record's ``custom_fields`` through the service's check."""

    custom_definitions: list[CustomField] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = self.instance.custom_fields or {}
        for definition in self.custom_definitions:
            self.initial.setdefault(
                PREFIX + definition.key, initial_value(definition, stored.get(definition.key))
            )

    def clean(self):
        cleaned = super().clean()
        values = {
            d.key: cleaned.get(PREFIX + d.key)
            for d in self.custom_definitions
            if PREFIX + d.key not in self.errors
        }
        try:
            self.instance.custom_fields = custom_values_clean(
                self._meta.model,
                values,
                current=self.instance.custom_fields,
                fields=self.custom_definitions,
            )
        except CustomValuesInvalid as invalid:
            for key, message in invalid.errors.items():
                if PREFIX + key not in self.errors:
                    self.add_error(PREFIX + key, message)
        return cleaned


class CustomFieldsAdminMixin:
    """Adds the model's custom fields to its form (a "Custom fields" section) and a list
    filter per yes/no or choice field. A contact's values are personal data: shown only to
    roles that see personal data."""

    def custom_definitions(self, request) -> list[CustomField]:
        if self.model is Contact and not can_view_pii(request.user):
            return []
        if not hasattr(request, "_custom_definitions"):
            request._custom_definitions = {}
        cached = request._custom_definitions
        if self.model not in cached:
            cached[self.model] = definitions(self.model)
        return cached[self.model]

    def get_form(self, request, obj=None, change=False, **kwargs):
        found = self.custom_definitions(request)
        if found:
            attrs = {PREFIX + d.key: form_field(d) for d in found}
            attrs["custom_definitions"] = found
            base = kwargs.get("form", self.form)
            kwargs["form"] = type(base.__name__, (CustomFieldsFormMixin, base), attrs)
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        names = [PREFIX + d.key for d in self.custom_definitions(request)]
        fieldsets = [
            (title, {**options, "fields": [f for f in options["fields"] if f not in names]})
            for title, options in fieldsets
        ]
        if names:
            fieldsets.append(("Custom fields", {"fields": names}))
        return fieldsets

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        for definition in self.custom_definitions(request):
            if definition.type in FILTERABLE:
                filters.append(custom_value_filter(definition))
        return filters


FILTERABLE = (CustomField.Type.YES_NO, CustomField.Type.CHOICE, CustomField.Type.MULTI_CHOICE)


def custom_value_filter(definition: CustomField) -> type[admin.SimpleListFilter]:
    """A list filter on one custom field: its choices (or yes / no), and "no value"."""
    key = definition.key

    class CustomValueFilter(admin.SimpleListFilter):
        title = definition.label
        parameter_name = PREFIX + key

        def lookups(self, request, model_admin):
            if definition.type == CustomField.Type.YES_NO:
                options = [("yes", "Yes"), ("no", "No")]
            else:
                options = [(choice, choice) for choice in definition.choices]
            return [*options, ("-", "No value")]

        def queryset(self, request, queryset):
            value = self.value()
            if value is None:
                return queryset
            if value == "-":
                return queryset.filter(~Q(custom_fields__has_key=key))
            if definition.type == CustomField.Type.YES_NO:
                return queryset.filter(custom_fields__contains={key: value == "yes"})
            if definition.type == CustomField.Type.MULTI_CHOICE:
                return queryset.filter(custom_fields__contains={key: [value]})
            return queryset.filter(custom_fields__contains={key: value})

    return CustomValueFilter
