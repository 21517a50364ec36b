"""Computed traits that marketers define: the form (checked by the service that the API also
calls), a preview of the values on a sample of profiles before saving, and the state of the
computation for every profile."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html

from cdphub.admin_mixins import ReadableModelAdmin
from profiles.models import ComputedTrait
from profiles.segments.defined_traits import (
    DEFINITION_FIELDS,
    computed_trait_delete,
    computed_trait_errors,
    computed_trait_save,
    computed_trait_users,
    defined_trait_preview,
)
from profiles.tasks import recompute_defined_trait_task, remove_defined_trait_values_task


class ComputedTraitForm(forms.ModelForm):
    class Meta:
        model = ComputedTrait
        fields = DEFINITION_FIELDS

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        trait = self.instance
        for name, value in cleaned.items():
            setattr(trait, name, value)
        for field, problems in computed_trait_errors(trait).items():
            for problem in problems:
                self.add_error(field if field in self.fields else None, problem)
        return cleaned


@admin.register(ComputedTrait)
class ComputedTraitAdmin(ReadableModelAdmin):
    form = ComputedTraitForm
    change_form_template = "admin/profiles/computedtrait/change_form.html"
    list_display = ["name", "key", "kind", "reads", "window_days", "status", "computed_at"]
    list_filter = ["kind", "event_type", "status"]
    search_fields = ["name", "key", "event_name"]
    actions = ["recompute_selected"]
    fieldsets = [
        (None, {"fields": ["name", "key", "description"]}),
        (
            "What it computes",
            {
                "fields": [
                    "kind",
                    "event_type",
                    "event_name",
                    "property",
                    "where",
                    "window_days",
                    "unique_limit",
                ]
            },
        ),
        ("Computation", {"fields": ["status", "last_error", "computed_at", "in_a_rule"]}),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "status",
        "last_error",
        "computed_at",
        "in_a_rule",
        "created_by",
        "created_at",
        "updated_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return [*fields, "key"] if obj is not None else fields

    @admin.display(description="reads")
    def reads(self, trait):
        name = trait.event_name or "any name"
        return f"{trait.get_event_type_display()}: {name}"

    @admin.display(description="in a segment rule")
    def in_a_rule(self, trait):
        if trait.pk is None:
            return "Shown once the trait is saved."
        return format_html(
            '<code>{{"computed": "{}", "op": "gte", "value": ...}}</code>', trait.key
        )

    def save_model(self, request, obj, form, change):
        trait = computed_trait_save(trait=obj, by=request.user)
        transaction.on_commit(lambda: recompute_defined_trait_task.delay(trait.pk))

    def get_deleted_objects(self, objs, request):
        """The delete page lists the segments and destinations whose rules read a trait as
        protected: it cannot be deleted until they stop."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for trait in objs:
            for label, names in computed_trait_users(trait).items():
                protected.extend(f"{label[:-1].capitalize()}: {name}" for name in names)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        key = computed_trait_delete(trait=obj)
        transaction.on_commit(lambda: remove_defined_trait_values_task.delay(key))

    def delete_queryset(self, request, queryset):
        for trait in queryset:
            self.delete_model(request, trait)

    @admin.action(
        description="Compute selected traits again for every profile", permissions=["change"]
    )
    def recompute_selected(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        queryset.update(status=ComputedTrait.Status.NEW)
        for pk in ids:
            transaction.on_commit(lambda pk=pk: recompute_defined_trait_task.delay(pk))
        self.message_user(request, f"{len(ids)} trait(s) queued for computation.", messages.SUCCESS)

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/", preview, name="profiles_computedtrait_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """JSON for the preview on the form: the definition as typed, computed (not saved) for
        a sample of profiles, or what is wrong with it per field."""
        if request.method != "POST" or not (
            self.has_add_permission(request) or self.has_change_permission(request)
        ):
            return JsonResponse({"errors": {"": ["not allowed"]}}, status=403)
        instance = ComputedTrait.objects.filter(pk=request.POST.get("id") or None).first()
        form = ComputedTraitForm(request.POST, instance=instance or ComputedTrait())
        if instance is not None:
            form.data = form.data.copy()
            form.data["key"] = instance.key  # read-only on the change form
        if not form.is_valid():
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        preview = defined_trait_preview(form.instance, pii=self.may_view_pii(request))
        examples = [
            {
                "profile": pk,
                "url": reverse("admin:profiles_profile_change", args=[pk]),
                "value": value,
            }
            for pk, value in preview["examples"]
        ]
        return JsonResponse({**preview, "examples": examples})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "preview_url": reverse("admin:profiles_computedtrait_preview"),
        }
        return super().changeform_view(request, object_id, form_url, extra_context)
