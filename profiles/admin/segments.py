"""Segments (rule with preview, refresh, static upload, export) and the membership history."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from cdphub.admin_mixins import ReadableModelAdmin, live_preview_payload
from cdphub.audit import audit_record
from cdphub.pii import mask_value
from profiles.models import (
    ObservedField,
    Segment,
    SegmentMembershipChange,
)
from profiles.segments.builder import rule_vocabulary, rule_warnings
from profiles.segments.exports import (
    COMPUTED,
    TRAIT,
    export_counts,
    segment_export_csv,
)
from profiles.segments.membership import (
    segment_is_personal,
    segment_preview,
    segment_refresh,
    segment_static_upload,
)
from profiles.segments.rules import rule_errors
from profiles.segments.rules.profile_target import PROFILES
from profiles.selectors import computed_trait_names
from profiles.tasks import refresh_segment_task

PERSONAL_SEGMENT = (
    "This segment's rule has conditions on personal data: who is in it is shown to those who "
    "may see personal data."
)


class SegmentAdminForm(forms.ModelForm):
    # Set on the form class made for each request (ModelAdmin.get_form): whether the user may
    # see personal data, and so use conditions on it.
    pii_allowed = True

    class Meta:
        model = Segment
        fields = ["name", "description", "kind", "rule", "refresh_interval_minutes"]

    def clean(self):
        cleaned = super().clean()
        kind, rule = cleaned.get("kind"), cleaned.get("rule")
        if kind == Segment.Kind.STATIC and rule:
            self.add_error("rule", "A static segment has no rule: upload its members instead.")
        elif kind == Segment.Kind.DYNAMIC and "rule" in cleaned:
            errors = rule_errors(rule, segment_id=self.instance.pk, pii_allowed=self.pii_allowed)
            for message in errors:
                self.add_error("rule", message)
        return cleaned


class SegmentUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV: a column named email or user_id, or one value per row.")
    identifier_kind = forms.ChoiceField(
        choices=[("email", "E-mail addresses"), ("user_id", "User ids")],
        label="The file holds",
    )


class SegmentExportForm(forms.Form):
    purpose = forms.ChoiceField(
        label="Only people who agreed to",
        help_text="Members without this consent (or whose processing is restricted) are left "
        "out: the counts above say how many.",
    )
    fields = forms.MultipleChoiceField(
        label="Columns",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The profile id comes first in every export.",
    )

    def __init__(self, *args, purposes, fields, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purpose"].choices = purposes
        self.fields["fields"].choices = fields


def export_field_choices() -> list[tuple[str, str]]:
    """The identifiers, the given traits seen (top-level, not objects) and computed traits."""
    traits = ObservedField.objects.filter(kind=ObservedField.Kind.TRAIT).exclude(key__contains=".")
    traits = traits.exclude(types=["object"]).order_by("key").values_list("key", flat=True)
    computed = computed_trait_names()
    return [
        ("email", "E-mail"),
        ("phone", "Phone"),
        ("user_id", "User id"),
        *((TRAIT + key, f"Trait: {key}") for key in traits[:100]),
        *((COMPUTED + key, f"Computed: {name}") for key, name in computed),
    ]


def upload_summary(result) -> str:
    parts = [
        f"{result.rows} rows: {result.resolved} profiles found, now {result.size} members "
        f"(+{result.entered} / -{result.exited})."
    ]
    if result.unresolved:
        parts.append(f"Not found ({len(result.unresolved)}): {', '.join(result.unresolved[:20])}")
    if result.invalid:
        parts.append(f"Invalid ({len(result.invalid)}): {', '.join(result.invalid[:20])}")
    return " ".join(parts)


@admin.register(Segment)
class SegmentAdmin(ReadableModelAdmin):
    form = SegmentAdminForm
    list_display = [
        "name",
        "kind",
        "size",
        "status",
        "refreshed_at",
        "refresh_interval_minutes",
        "created_by",
        "updated_at",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["name"]
    list_select_related = ["created_by"]
    actions = ["refresh_selected"]
    pii_displays = ("members_list", "history_list")
    readonly_fields = [
        "status",
        "last_error",
        "size",
        "refreshed_at",
        "created_by",
        "created_at",
        "updated_at",
        "size_over_time",
        "members_list",
        "history_list",
    ]
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", "rule", "refresh_interval_minutes"]}),
        (
            "Refresh",
            {"fields": ["status", "last_error", "size", "refreshed_at", "size_over_time"]},
        ),
        ("Members", {"fields": ["members_list", "history_list"]}),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.pii_allowed = self.may_view_pii(request)
        return form

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if obj.kind == Segment.Kind.DYNAMIC:
            transaction.on_commit(lambda: refresh_segment_task.delay(obj.pk))

    @admin.action(description="Refresh selected segments now", permissions=["change"])
    def refresh_selected(self, request, queryset):
        failed = 0
        for segment in queryset:
            failed += bool(segment_refresh(segment=segment).error)
        self.message_user(request, f"Refreshed {queryset.count() - failed}, failed {failed}.")

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        upload = self.admin_site.admin_view(self.upload_view)
        export = self.admin_site.admin_view(self.export_view)
        export_counts_json = self.admin_site.admin_view(self.export_counts_view)
        return [
            path("preview/", preview, name="profiles_segment_preview"),
            path("<int:object_id>/upload/", upload, name="profiles_segment_upload"),
            path("<int:object_id>/export/", export, name="profiles_segment_export"),
            path(
                "<int:object_id>/export/counts/",
                export_counts_json,
                name="profiles_segment_export_counts",
            ),
            *super().get_urls(),
        ]

    def upload_view(self, request, object_id: int):
        """Replace a static segment's members by an uploaded CSV of e-mails or user ids."""
        segment = get_object_or_404(Segment, pk=object_id, kind=Segment.Kind.STATIC)
        if not self.has_change_permission(request, segment):
            raise PermissionDenied
        form = SegmentUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = segment_static_upload(
                    segment=segment,
                    data=form.cleaned_data["file"].read(),
                    kind=form.cleaned_data["identifier_kind"],
                )
            except UnicodeDecodeError:
                form.add_error("file", "The file must be UTF-8 encoded CSV.")
            else:
                self.message_user(request, upload_summary(result), messages.SUCCESS)
                return redirect("admin:profiles_segment_change", segment.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": segment,
            "form": form,
            "title": f"Upload members of {segment}",
        }
        return TemplateResponse(request, "admin/profiles/segment/upload.html", context)

    def export_view(self, request, object_id: int):
        """Members as a CSV with the chosen columns, only those the chosen purpose allows (the
        consent selector), saying first how many each purpose leaves out. Exports carry
        personal data: for those who may see it; each download is in the audit trail."""
        from consent.selectors import purposes_active

        segment = self.exportable_segment(request, object_id)
        purposes = purposes_active()
        form = SegmentExportForm(
            request.POST or None,
            purposes=purposes,
            fields=export_field_choices(),
            initial={"fields": ["email"]},
        )
        if request.method == "POST" and form.is_valid():
            purpose, fields = form.cleaned_data["purpose"], form.cleaned_data["fields"]
            (_, counts), *_ = export_counts(segment, [(purpose, purpose)])
            audit_record(
                actor=request.user,
                action="segment.export",
                obj=segment,
                note=f"{counts['allowed']} members for {purpose}, "
                f"{counts['left_out']} left out; columns: {', '.join(fields) or 'profile id'}",
            )
            lines = segment_export_csv(segment=segment, purpose_code=purpose, fields=fields)
            response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
            filename = f"segment-{segment.pk}-{purpose}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": segment,
            "form": form,
            "purposes": purposes,
            "title": f"Export the members of {segment}",
        }
        return TemplateResponse(request, "admin/profiles/segment/export.html", context)

    def export_counts_view(self, request, object_id: int):
        """The export page's counts per purpose, asked for once the page shows: on a segment of
        a million members each purpose takes the consent selector most of a second, and the
        page need not wait for them."""
        from consent.selectors import purposes_active

        segment = self.exportable_segment(request, object_id)
        counts = export_counts(segment, purposes_active())
        return JsonResponse(
            {"purposes": [{"name": name, **count} for name, count in counts]},
        )

    def exportable_segment(self, request, object_id: int) -> Segment:
        """Exports carry personal data: for those who may view the segment and personal data."""
        segment = get_object_or_404(Segment, pk=object_id)
        if not (self.has_view_permission(request, segment) and self.may_view_pii(request)):
            raise PermissionDenied
        return segment

    def preview_view(self, request):
        """JSON for the live preview on the edit page: count and a sample, or rule errors."""
        payload, refusal = live_preview_payload(self, request)
        if refusal is not None:
            return refusal
        segment_id = payload.get("segment") if isinstance(payload.get("segment"), int) else None
        errors = rule_errors(
            payload.get("rule"), segment_id=segment_id, pii_allowed=self.may_view_pii(request)
        )
        if errors:
            return JsonResponse({"errors": errors}, status=400)
        result = segment_preview(rule=payload["rule"], sample_size=10, segment_id=segment_id)
        pii = self.may_view_pii(request)
        sample = [
            {"id": p.pk, "name": p.display_name if pii else mask_value(p.display_name)}
            for p in result["sample"]
        ]
        warnings = rule_warnings(payload["rule"])
        return JsonResponse({"count": result["count"], "sample": sample, "warnings": warnings})

    @admin.display(description="size over time")
    def size_over_time(self, segment):
        snapshots = list(segment.size_snapshots.all()[:60])[::-1]
        if not snapshots:
            return "Not refreshed yet."
        return format_html(
            "{}<div>{}</div>",
            size_chart(snapshots),
            format_html_join(
                " · ",
                "{}: {} (+{} / -{})",
                (
                    (s.taken_at.strftime("%Y-%m-%d %H:%M"), s.size, s.entered, s.exited)
                    for s in snapshots[-5:]
                ),
            ),
        )

    @admin.display(description="members (newest 25)")
    def members_list(self, segment, pii: bool):
        if not pii and segment_is_personal(segment):
            return PERSONAL_SEGMENT
        memberships = segment.memberships.select_related("profile").order_by("-profile_id")[:25]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:profiles_profile_change", args=[m.profile_id]),
                    m.profile_id,
                    m.profile.display_name if pii else mask_value(m.profile.display_name),
                    m.entered_at.strftime("%Y-%m-%d %H:%M"),
                )
                for m in memberships
            ),
        )
        if not rows:
            return "No members."
        return format_html(
            "<table><thead><tr><th>profile</th><th>name</th><th>entered</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="entered / exited (latest 30)")
    def history_list(self, segment, pii: bool):
        if not pii and segment_is_personal(segment):
            return PERSONAL_SEGMENT
        changes = segment.changes.all()[:30]
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td></tr>',
            (
                (
                    c.changed_at.strftime("%Y-%m-%d %H:%M"),
                    reverse("admin:profiles_profile_change", args=[c.profile_id]),
                    c.profile_id,
                    c.get_kind_display(),
                )
                for c in changes
            ),
        )
        if not rows:
            return "No changes yet."
        return format_html(
            "<table><thead><tr><th>when</th><th>profile</th><th>change</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "preview_url": reverse("admin:profiles_segment_preview"),
            "rule_vocabulary": rule_vocabulary(PROFILES),
        }
        return super().changeform_view(request, object_id, form_url, extra_context)


def size_chart(snapshots, width: int = 320, height: int = 60):
    """A small inline SVG line of the segment's size (no external chart library)."""
    top = max(s.size for s in snapshots) or 1
    step = width / max(len(snapshots) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - (s.size / top) * (height - 4) - 2:.1f}"
        for i, s in enumerate(snapshots)
    )
    return format_html(
        '<svg width="{}" height="{}" role="img" aria-label="segment size over time">'
        '<polyline fill="none" stroke="#417690" stroke-width="2" points="{}"/></svg>',
        width,
        height,
        points,
    )


@admin.register(SegmentMembershipChange)
class SegmentMembershipChangeAdmin(ReadableModelAdmin):
    list_display = ["id", "segment", "profile", "kind", "changed_at"]
    list_filter = ["kind", "segment"]
    list_select_related = ["segment", "profile"]
    raw_id_fields = ["segment", "profile"]
    search_fields = ["=profile__id"]
    readonly_fields = ["segment", "profile", "kind", "changed_at"]

    def has_add_permission(self, request):
        return False  # written by refreshes

    def has_change_permission(self, request, obj=None):
        return False
