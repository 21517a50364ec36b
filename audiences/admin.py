"""The DMP's admin: visitors, providers and their files, the taxonomy, audiences (preview,
build, lookalike quality, exports).

One module, a few hundred lines: the DMP's admin classes are small and read best side by side."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from audiences.lookalike import LookalikeError, lookalike_build_request, lookalike_estimate
from audiences.models import (
    Audience,
    AudienceExport,
    AudienceMembership,
    AudienceMembershipChange,
    AudienceSync,
    Category,
    DataProvider,
    JobStatus,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)
from audiences.rules import VISITORS
from audiences.selectors import audience_visitors, segment_profiles
from audiences.services import (
    ProviderFileError,
    TaxonomyImportError,
    audience_export,
    audience_preview,
    audience_refresh,
    audience_rule_errors,
    provider_file_header_check,
    provider_file_import_create,
    taxonomy_import,
)
from audiences.syncs import audience_sync_link
from audiences.tasks import lookalike_build_later, provider_file_import_later
from cdphub.admin_mixins import ReadableModelAdmin, live_preview_payload, presence_filter
from profiles.models import Destination, Segment
from profiles.segments.builder import rule_vocabulary, rule_warnings


class TraitHitInline(admin.TabularInline):
    model = VisitorTraitHit
    extra = 0
    fields = ["category", "provider", "observed_at", "expires_at"]
    readonly_fields = fields
    can_delete = False
    ordering = ["-observed_at"]

    def has_add_permission(self, request, obj=None):
        return False  # hits arrive through provider files and collection, with their expiry

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("category", "provider")


@admin.register(Visitor)
class VisitorAdmin(ReadableModelAdmin):
    list_display = [
        "key",
        "key_kind",
        "country",
        "device_type",
        "browser",
        "profile",
        "last_seen_at",
        "expires_at",
    ]
    # No country filter: listing its values would scan the whole (large) visitor table.
    list_filter = [
        "key_kind",
        "device_type",
        presence_filter("profile", "known person?", "linked to a profile", "anonymous"),
    ]
    search_fields = ["=key"]
    search_help_text = "Exact cookie or device id."
    list_select_related = ["profile"]
    raw_id_fields = ["profile"]
    readonly_fields = ["created_at"]
    inlines = [TraitHitInline]


@admin.register(DataProvider)
class DataProviderAdmin(ReadableModelAdmin):
    list_display = ["name", "party", "retention_days", "is_active", "created_at"]
    list_filter = ["party", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]


class TaxonomyUploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV with the columns code, name, kind, parent_code, tier. Existing codes are "
        "updated; any bad row refuses the whole file."
    )


@admin.register(Category)
class CategoryAdmin(ReadableModelAdmin):
    list_display = ["code", "name", "kind", "tier", "parent"]
    list_filter = ["kind", "tier"]
    search_fields = ["code", "name"]
    list_select_related = ["parent"]
    autocomplete_fields = ["parent"]
    change_list_template = "admin/audiences/category/change_list.html"

    def get_urls(self):
        upload = self.admin_site.admin_view(self.import_view)
        return [
            path("import/", upload, name="audiences_category_import"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = TaxonomyUploadForm(request.POST or None, request.FILES or None)
        errors = []
        if request.method == "POST" and form.is_valid():
            try:
                result = taxonomy_import(file=form.cleaned_data["file"])
            except TaxonomyImportError as error:
                errors = error.errors
            else:
                self.message_user(
                    request,
                    f"Taxonomy imported: {result.created} created, {result.updated} updated.",
                )
                return redirect("admin:audiences_category_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import taxonomy",
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/audiences/category/import.html", context)


@admin.register(VisitorTraitHit)
class VisitorTraitHitAdmin(ReadableModelAdmin):
    list_display = ["id", "visitor", "category", "provider", "observed_at", "expires_at"]
    list_filter = ["provider", "category__kind"]
    search_fields = ["=visitor__key", "=category__code"]
    search_help_text = "Exact cookie/device id or category code."
    list_select_related = ["visitor", "category", "provider"]
    raw_id_fields = ["visitor"]
    autocomplete_fields = ["category", "provider"]
    ordering = ["-id"]  # newest first through the primary key: no sort of the whole table


class AudienceAdminForm(forms.ModelForm):
    """A rule audience's rule is checked like a segment's: every error with its path."""

    class Meta:
        model = Audience
        fields = ["name", "description", "kind", "rule", "seed_segment", "reach_percent"]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind  # read-only once saved
        if kind == Audience.Kind.RULE and cleaned.get("rule"):
            for error in audience_rule_errors(cleaned["rule"]):
                self.add_error("rule", error)
        if kind == Audience.Kind.LOOKALIKE and not cleaned.get("seed_segment"):
            self.add_error("seed_segment", "A lookalike needs the seed segment it looks like.")
        return cleaned


class AudienceSyncInline(admin.TabularInline):
    """The destinations that keep this audience's visitors in step: pick a destination created
    to receive a DMP audience (in Destinations); its initial load starts when saved. A link
    stays: to stop, pause or delete the destination."""

    model = AudienceSync
    fk_name = "audience"
    fields = ["destination", "sync_state", "created_by", "created_at"]
    readonly_fields = ["sync_state", "created_by", "created_at"]
    extra = 0
    can_delete = False
    verbose_name = "sync to a destination"
    verbose_name_plural = "syncs to destinations"

    def has_change_permission(self, request, obj=None):
        return False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "destination":
            kwargs["queryset"] = Destination.objects.filter(
                receiving=Destination.Receiving.AUDIENCE, dmp_audience_sync__isnull=True
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="state")
    def sync_state(self, sync):
        destination = sync.destination
        if destination.sync_waiting_reason:
            return destination.sync_waiting_reason
        if destination.sync_loaded_at is None:
            return "loading"
        return f"loaded {destination.sync_loaded_at:%Y-%m-%d %H:%M}; changes follow"


def lookalike_preview(payload: dict) -> JsonResponse:
    try:
        estimate = lookalike_estimate(
            seed_segment_id=payload.get("seed_segment"), reach_percent=payload.get("reach_percent")
        )
    except LookalikeError as error:
        return JsonResponse({"errors": [str(error)]}, status=400)
    warnings = []
    if not estimate.seed_visitors:
        warnings.append(
            "The seed segment has no visitors with interest data (its members' cookies and "
            "devices are linked only with advertising or personalisation consent)."
        )
    return JsonResponse(
        {
            "count": estimate.size,
            "seed_visitors": estimate.seed_visitors,
            "candidates": estimate.candidates,
            "warnings": warnings,
        }
    )


@admin.register(Audience)
class AudienceAdmin(ReadableModelAdmin):
    list_display = [
        "name",
        "kind",
        "size",
        "seed_segment",
        "reach_percent",
        "refreshed_at",
        "created_by",
    ]
    list_filter = ["kind"]
    search_fields = ["name"]
    list_select_related = ["seed_segment", "created_by"]
    autocomplete_fields = ["seed_segment"]
    readonly_fields = [
        "size",
        "refreshed_at",
        "seed_size",
        "lookalike_recall",
        "build_status",
        "build_message",
        "build_requested_at",
        "created_by",
        "created_at",
        "updated_at",
    ]

    actions = ["refresh_members", "build_lookalike", "export_google", "export_meta", "export_ids"]
    form = AudienceAdminForm
    # What only one kind has: a saved audience's page shows the fields of its kind (the add
    # form switches them as the kind is chosen).
    RULE_ONLY = ("rule",)
    LOOKALIKE_ONLY = (
        "seed_segment",
        "reach_percent",
        "seed_size",
        "lookalike_recall",
        "build_status",
        "build_message",
        "build_requested_at",
    )

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None:
            return [f for f in fields if f not in self.LOOKALIKE_ONLY or f in self.form.Meta.fields]
        other = self.LOOKALIKE_ONLY if obj.kind == Audience.Kind.RULE else self.RULE_ONLY
        return [f for f in fields if f not in other]

    def get_readonly_fields(self, request, obj=None):
        # A kind is chosen once: a rule audience and a lookalike keep different things.
        readonly = super().get_readonly_fields(request, obj)
        return [*readonly, "kind"] if obj is not None else readonly

    inlines = [AudienceSyncInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not AudienceSync:
            return super().save_formset(request, form, formset, change)
        for sync in formset.save(commit=False):  # only new links: they cannot be changed
            audience_sync_link(
                audience=form.instance, destination=sync.destination, actor=request.user
            )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        audience = form.instance
        if audience.kind == Audience.Kind.RULE and audience.rule:
            size = audience_refresh(audience=audience)
            self.message_user(request, f"{audience}: {size:,} visitors match the rule now.")
        lookalike_changed = not change or {"kind", "seed_segment", "reach_percent"} & set(
            form.changed_data
        )
        if audience.kind == Audience.Kind.LOOKALIKE and lookalike_changed:
            # Scoring reads every visitor's categories: a background job, with its status
            # on this page and among the requester's jobs.
            lookalike_build_request(audience=audience, actor=request.user)
            lookalike_build_later(audience)
            self.message_user(
                request,
                f"{audience}: the lookalike is being built; its status and quality show on "
                "its page and among your jobs.",
            )

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="audiences_audience_preview"), *super().get_urls()]

    def preview_view(self, request):
        """JSON for the form's live preview: a rule's count (or its errors and warnings), or
        a lookalike's estimate from its seed segment and reach."""
        payload, refusal = live_preview_payload(self, request)
        if refusal is not None:
            return refusal
        if payload.get("kind") == Audience.Kind.LOOKALIKE:
            return lookalike_preview(payload)
        errors = audience_rule_errors(payload.get("rule"))
        if errors:
            return JsonResponse({"errors": errors}, status=400)
        count = audience_preview(rule=payload["rule"])["count"]
        return JsonResponse({"count": count, "warnings": rule_warnings(payload["rule"])})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "preview_url": reverse("admin:audiences_audience_preview"),
            "rule_vocabulary": rule_vocabulary(VISITORS),
        }
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.action(description="Refresh members from the rule", permissions=["change"])
    def refresh_members(self, request, queryset):
        for audience in queryset.filter(kind=Audience.Kind.RULE):
            size = audience_refresh(audience=audience)
            self.message_user(request, f"{audience}: {size:,} visitors.")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def export(self, request, queryset, destination: str) -> None:
        for audience in queryset:
            job = audience_export(
                destination=destination,
                visitors=audience_visitors(audience.pk),
                audience=audience,
                created_by=request.user,
            )
            if job.status == JobStatus.DONE:
                self.message_user(
                    request,
                    format_html(
                        "{}: {} rows exported, <a href='{}'>download</a>.",
                        audience,
                        job.row_count,
                        export_download_url(job),
                    ),
                )
            else:
                self.message_user(request, f"{audience}: {job.message}", messages.ERROR)

    @admin.action(description="Build lookalike from the seed segment", permissions=["change"])
    def build_lookalike(self, request, queryset):
        for audience in queryset:
            try:
                audience = lookalike_build_request(audience=audience, actor=request.user)
                lookalike_build_later(audience)
                audience.refresh_from_db()
            except LookalikeError as error:
                self.message_user(request, f"{audience}: {error}", messages.ERROR)
                continue
            # Without a broker the build ran already, when the request was committed.
            if audience.build_status == Audience.BuildStatus.FAILED:
                self.message_user(request, f"{audience}: {audience.build_message}", messages.ERROR)
            elif audience.build_status == Audience.BuildStatus.READY:
                self.message_user(request, f"{audience}: {audience.build_message}")
            else:
                self.message_user(
                    request,
                    f"{audience}: building in the background; its page and your jobs show how "
                    "it ends.",
                )

    @admin.action(description="Export for Google Customer Match", permissions=["change"])
    def export_google(self, request, queryset):
        self.export(request, queryset, "google")

    @admin.action(description="Export for Meta Custom Audiences", permissions=["change"])
    def export_meta(self, request, queryset):
        self.export(request, queryset, "meta")

    @admin.action(description="Export plain cookie/device ids", permissions=["change"])
    def export_ids(self, request, queryset):
        self.export(request, queryset, "ids")


@admin.register(AudienceMembership)
class AudienceMembershipAdmin(ReadableModelAdmin):
    list_display = ["id", "audience", "visitor", "score", "entered_at"]
    list_filter = ["audience"]
    search_fields = ["=visitor__key"]
    list_select_related = ["audience", "visitor"]
    raw_id_fields = ["visitor"]
    autocomplete_fields = ["audience"]


@admin.register(AudienceMembershipChange)
class AudienceMembershipChangeAdmin(ReadableModelAdmin):
    """Who entered and exited each audience, as its syncs send it."""

    list_display = ["id", "audience", "key_kind", "key", "kind", "changed_at"]
    list_filter = ["kind", "audience"]
    list_select_related = ["audience"]
    search_fields = ["=key"]
    readonly_fields = ["audience", "visitor_id", "key_kind", "key", "kind", "changed_at"]

    def has_add_permission(self, request):
        return False  # written by whatever sets the audience's members

    def has_change_permission(self, request, obj=None):
        return False


class ProviderFileUploadForm(forms.ModelForm):
    class Meta:
        model = ProviderFileImport
        fields = ["provider", "file"]

    def clean_file(self):
        upload = self.cleaned_data["file"]
        try:
            provider_file_header_check(upload)
        except ProviderFileError as error:
            raise forms.ValidationError(str(error)) from None
        return upload


@admin.register(ProviderFileImport)
class ProviderFileImportAdmin(ReadableModelAdmin):
    """The add page is the upload page: choose the provider, upload its segment file; the
    import runs in the background and this page shows its progress and bad rows."""

    list_display = [
        "id",
        "provider",
        "status",
        "progress",
        "imported_rows",
        "error_rows",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "provider"]
    search_fields = ["=id"]
    list_select_related = ["provider", "created_by"]
    autocomplete_fields = ["provider"]
    readonly_fields = [
        "provider",
        "file",
        "status",
        "progress",
        "total_rows",
        "processed_rows",
        "imported_rows",
        "error_rows",
        "error_list",
        "message",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ProviderFileUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["provider", "file"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        job = provider_file_import_create(
            provider=form.cleaned_data["provider"],
            file=form.cleaned_data["file"],
            created_by=request.user,
        )
        provider_file_import_later(job)
        obj.pk = job.pk

    @admin.display(description="progress")
    def progress(self, job):
        return f"{job.progress_percent}% ({job.processed_rows} of {job.total_rows} rows)"

    @admin.display(description="bad rows")
    def error_list(self, job):
        if not job.errors:
            return "None."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td></tr>", ((e["line"], e["error"]) for e in job.errors)
        )
        note = (
            f" (first {len(job.errors)} of {job.error_rows})"
            if job.error_rows > len(job.errors)
            else ""
        )
        return format_html(
            "<table><thead><tr><th>line{}</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            note,
            rows,
        )


class ExportRequestForm(forms.Form):
    segment = forms.ModelChoiceField(
        Segment.objects.all(), required=False, help_text="A CDP segment (known people)..."
    )
    audience = forms.ModelChoiceField(
        Audience.objects.all(), required=False, help_text="...or a DMP audience (visitors)."
    )
    destination = forms.ChoiceField(choices=AudienceExport.Destination.choices)

    def clean(self):
        data = super().clean()
        if (data.get("segment") is None) == (data.get("audience") is None):
            raise forms.ValidationError("Choose either a segment or an audience.")
        return data


@admin.register(AudienceExport)
class AudienceExportAdmin(ReadableModelAdmin):
    list_display = [
        "id",
        "destination",
        "audience",
        "segment",
        "status",
        "row_count",
        "download",
        "created_by",
        "created_at",
    ]
    list_filter = ["destination", "status"]
    search_fields = ["=id"]
    list_select_related = ["audience", "segment", "created_by"]
    pii_displays = ("download",)
    readonly_fields = [
        "destination",
        "audience",
        "segment",
        "status",
        "row_count",
        "download",
        "message",
        "created_by",
        "created_at",
        "finished_at",
    ]
    fields = readonly_fields

    def has_change_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        """ "Add" runs an export: a segment or an audience, for one destination."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ExportRequestForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            job = self.export_run(request, form.cleaned_data)
            if job.status == JobStatus.DONE:
                self.message_user(
                    request,
                    format_html(
                        "{} rows exported, <a href='{}'>download</a>.",
                        job.row_count,
                        export_download_url(job),
                    ),
                )
                return redirect("admin:audiences_audienceexport_change", job.pk)
            form.add_error(None, job.message)
        context = {
            **self.admin_site.each_context(request),
            "title": "Export for an ad platform",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/audiences/audienceexport/new.html", context)

    def export_run(self, request, data) -> AudienceExport:
        if data["segment"] is not None:
            return audience_export(
                destination=data["destination"],
                profiles=segment_profiles(data["segment"].pk),
                segment=data["segment"],
                created_by=request.user,
            )
        return audience_export(
            destination=data["destination"],
            visitors=audience_visitors(data["audience"].pk),
            audience=data["audience"],
            created_by=request.user,
        )

    def get_urls(self):
        download = self.admin_site.admin_view(self.download_view)
        return [
            path("<int:pk>/download/", download, name="audiences_audienceexport_download"),
            *super().get_urls(),
        ]

    def download_view(self, request, pk: int):
        """Export files hold pseudonymised personal data (hashes, cookie and device ids):
        served only through the admin, to users who may view exports and personal data, never
        from a public media URL."""
        if not (self.has_view_permission(request) and self.may_view_pii(request)):
            raise PermissionDenied
        export = get_object_or_404(AudienceExport, pk=pk)
        if not export.file:
            raise Http404("This export has no file (it was refused or failed).")
        return FileResponse(
            export.file.open("rb"), as_attachment=True, filename=export.file.name.rsplit("/")[-1]
        )

    @admin.display(description="file")
    def download(self, export, pii: bool):
        if not export.file:
            return "-"
        if not pii:
            return "(needs the personal data permission)"
        return format_html("<a href='{}'>download</a>", export_download_url(export))


def export_download_url(export: AudienceExport) -> str:
    return reverse("admin:audiences_audienceexport_download", args=[export.pk])
