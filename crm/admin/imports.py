"""Spreadsheet imports in the admin: upload, check (dry-run preview), apply, revert, errors as
CSV; plus the audit list of exports."""

from __future__ import annotations

import io

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.csv_export import SafeCsvWriter
from cdphub.pii import MASK, mask_text, mask_value
from crm.importfiles import ImportRefused
from crm.imports.jobs import (
    import_job_check_actor,
    import_job_create,
    import_overrides,
    import_preview_summary,
)
from crm.imports.revert import import_job_revert, import_job_revert_preview
from crm.models import Contact, DataExport, ImportJob, SalesTeam
from crm.resources import CUSTOM, SPECS
from crm.tasks import run_import_job_task

RUNNING = (ImportJob.Status.PENDING, ImportJob.Status.VALIDATING, ImportJob.Status.APPLYING)
# Checked, not applied: either apply mode may follow.
CHECKED = (ImportJob.Status.VALIDATED, ImportJob.Status.INVALID)
KEY_CHOICES = sorted({(key, key) for spec in SPECS.values() for key in spec.keys})


class ImportUploadForm(forms.Form):
    resource = forms.ChoiceField(choices=ImportJob.Resource.choices)
    mode = forms.ChoiceField(choices=ImportJob.Mode.choices, initial=ImportJob.Mode.UPSERT)
    key_field = forms.ChoiceField(
        choices=KEY_CHOICES,
        initial="email",
        label="Key",
        help_text="Matches rows to existing records. Contacts: email, external_id, phone, id; "
        "companies: domain, name, id; deals: name, id; activities: id.",
    )
    file = forms.FileField(help_text="CSV (UTF-8) or XLSX; the first row holds the headers.")
    column_map = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        label="Column mapping",
        help_text="Optional, one 'Header=field' per line ('Header=-' ignores a column). Headers "
        "are otherwise matched by name and common synonyms (Voornaam, E-mail address...).",
    )

    new_records_owner = forms.ModelChoiceField(
        queryset=get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .order_by("username"),
        required=False,
        label="Owner of new records",
        help_text="Who owns the records the import creates without an owner column value.",
    )
    new_records_team = forms.ModelChoiceField(
        queryset=SalesTeam.objects.order_by("name"),
        required=False,
        label="Or share them in a team",
        help_text="Round-robin among the team's members.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.CDPHUB_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size / 1e6:.0f} MB; the limit is {limit / 1e6:.0f} MB."
            )
        return upload

    def clean_column_map(self):
        return parse_column_map(self.cleaned_data["column_map"])

    def clean(self):
        cleaned = super().clean()
        resource, key = cleaned.get("resource"), cleaned.get("key_field")
        if resource and key and key not in SPECS[resource].keys:
            self.add_error(
                "key_field", f"{resource} can be keyed on {', '.join(SPECS[resource].keys)}."
            )
        return cleaned


class RemapForm(forms.Form):
    column_map = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 60}), label=""
    )

    def clean_column_map(self):
        return parse_column_map(self.cleaned_data["column_map"])


def parse_column_map(text: str) -> dict[str, str]:
    overrides = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        header, sep, field = line.partition("=")
        if not sep or not header.strip() or not field.strip():
            raise forms.ValidationError(f"Line {number} must look like 'Header=field'.")
        overrides[header.strip()] = field.strip()
    return overrides


def queue_job(job: ImportJob, *, apply: bool, valid_rows_only: bool = False) -> None:
    transaction.on_commit(
        lambda: run_import_job_task.delay(job.pk, apply=apply, valid_rows_only=valid_rows_only)
    )


@admin.register(ImportJob)
class ImportJobAdmin(ReadableModelAdmin):
    list_display = [
        "id",
        "resource",
        "file_name",
        "mode",
        "key_field",
        "status",
        "progress",
        "created_count",
        "updated_count",
        "skipped_count",
        "error_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "resource", "mode"]
    search_fields = ["file_name"]
    list_select_related = ["created_by"]
    actions = ["revert"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("file_data", "preview", "errors", "warnings")

    @admin.display(description="progress")
    def progress(self, job):
        from django.utils.html import format_html

        return format_html(
            '<progress max="100" value="{}"></progress> {}/{}',
            job.progress_percent,
            job.rows_done,
            job.rows_total or "?",
        )

    def has_change_permission(self, request, obj=None):
        return False  # a job is only created, checked, applied or reverted

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/apply/", view(self.apply_view), name="crm_importjob_apply"),
            path("<int:pk>/revert/", view(self.revert_view), name="crm_importjob_revert"),
            path("<int:pk>/remap/", view(self.remap_view), name="crm_importjob_remap"),
            path("<int:pk>/errors.csv", view(self.errors_view), name="crm_importjob_errors"),
            path(
                "<int:pk>/rows-to-fix.csv",
                view(self.rejected_view),
                name="crm_importjob_rejected",
            ),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                job = import_job_create(
                    resource=data["resource"],
                    mode=data["mode"],
                    key_field=data["key_field"],
                    file_name=data["file"].name,
                    data=data["file"],  # streamed into the database, not read whole
                    created_by=request.user,
                    overrides=data["column_map"],
                    new_records_owner=data["new_records_owner"],
                    new_records_team=data["new_records_team"],
                )
            except ImportRefused as exc:
                form.add_error(None, exc.messages)
            else:
                queue_job(job, apply=False)
                return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import a spreadsheet",
            "form": form,
        }
        return TemplateResponse(request, "admin/crm/importjob/upload.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        if job is None or not self.has_view_permission(request, job):
            raise PermissionDenied
        columns = (job.column_map or {}).get("columns", {})
        overrides = (job.column_map or {}).get("overrides", {})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(job),
            "job": job,
            "running": job.status in RUNNING,
            "columns": columns.items(),
            "remap_form": RemapForm(
                initial={"column_map": "\n".join(f"{h}={f}" for h, f in overrides.items())}
            ),
            "errors": masked_errors(job.errors[:100], self.may_view_pii(request)),
            "warnings": masked_errors(job.warnings[:100], self.may_view_pii(request)),
            "preview": masked_preview(job, self.may_view_pii(request)),
            "can_apply": job.status == ImportJob.Status.VALIDATED and self.may_act(request, job),
            "can_apply_valid": job.status in CHECKED
            and job.error_count > 0
            and job.created_count + job.updated_count > 0
            and self.may_act(request, job),
            "summary": import_preview_summary(job) if job.status in CHECKED else "",
            "has_rejected_file": ImportJob.objects.filter(
                pk=job.pk, rejected_file__isnull=False
            ).exists(),
            "can_revert": job.status == ImportJob.Status.APPLIED and self.may_act(request, job),
            "can_remap": job.status in (ImportJob.Status.INVALID, ImportJob.Status.VALIDATED)
            and self.may_act(request, job),
        }
        return TemplateResponse(request, "admin/crm/importjob/job.html", context)

    def may_act(self, request, job: ImportJob) -> bool:
        if not self.has_add_permission(request):
            return False
        try:
            import_job_check_actor(job=job, actor=request.user)
        except ImportRefused:
            return False
        return True

    def _job_for_post(self, request, pk: int) -> ImportJob | None:
        """The job to act on, or None after telling the user why they may not."""
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob, pk=pk)
        try:
            import_job_check_actor(job=job, actor=request.user)
        except ImportRefused as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return None
        return job

    def apply_view(self, request, pk: int):
        job = self._job_for_post(request, pk)
        if job is None:
            return job_page(pk)
        if request.POST.get("valid_rows_only"):
            if job.status not in CHECKED:
                self.message_user(request, "Check the import first.", messages.ERROR)
            else:
                queue_job(job, apply=True, valid_rows_only=True)
                self.message_user(
                    request,
                    "The valid rows are being applied; the others will be in a file to fix.",
                )
        elif job.status != ImportJob.Status.VALIDATED:
            self.message_user(
                request, "Only a checked import without errors can be applied.", messages.ERROR
            )
        else:
            queue_job(job, apply=True)
            self.message_user(request, "The import is being applied (all rows or none).")
        return job_page(pk)

    def remap_view(self, request, pk: int):
        job = self._job_for_post(request, pk)
        if job is None:
            return job_page(pk)
        form = RemapForm(request.POST)
        if not form.is_valid():
            self.message_user(request, " ".join(form.errors["column_map"]), messages.ERROR)
        elif job.status in (ImportJob.Status.INVALID, ImportJob.Status.VALIDATED):
            try:
                overrides = import_overrides(
                    SPECS[job.resource], form.cleaned_data["column_map"], actor=request.user
                )
            except ImportRefused as refused:
                self.message_user(request, " ".join(refused.messages), messages.ERROR)
                return job_page(pk)
            job.column_map = {"overrides": overrides}
            job.status = ImportJob.Status.PENDING
            job.save(update_fields=["column_map", "status"])
            queue_job(job, apply=False)
        return job_page(pk)

    def revert_view(self, request, pk: int):
        """GET: what reverting would undo, and a button to confirm; POST: revert."""
        if request.method == "GET":
            job = get_object_or_404(ImportJob.objects.defer("file_data"), pk=pk)
            if not self.may_act(request, job):
                raise PermissionDenied
            return self.revert_confirmation(request, [job], action_url=request.path)
        job = self._job_for_post(request, pk)
        if job is None:
            return job_page(pk)
        try:
            import_job_revert(job=job, actor=request.user)
        except ImportRefused as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            job.refresh_from_db(fields=["message"])
            self.message_user(request, job.message)
        return job_page(pk)

    def rejected_view(self, request, pk: int):
        """The rows left out by an apply of the valid rows, as they were in the file with the
        reason: personal data, for those who may see it."""
        job = get_object_or_404(ImportJob.objects.defer("file_data"), pk=pk)
        if not self.has_view_permission(request, job) or not self.may_view_pii(request):
            raise PermissionDenied
        data = ImportJob.objects.filter(pk=pk).values_list("rejected_file", flat=True).first()
        if data is None:
            raise Http404("This import left no rows out.")
        response = HttpResponse(bytes(data), content_type="text/csv; charset=utf-8")
        name = f"import-{job.pk}-rows-to-fix.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def errors_view(self, request, pk: int):
        job = get_object_or_404(ImportJob.objects.defer("file_data"), pk=pk)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        buffer = io.StringIO()
        writer = SafeCsvWriter(buffer)
        writer.writerow(["row", "column", "value", "message"])
        for error in masked_errors(job.errors, self.may_view_pii(request)):
            writer.writerow([error["row"], error["column"], error["value"], error["message"]])
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        return response

    def revert_confirmation(self, request, jobs, *, action_url: str, selected=()):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Revert the import?" if len(jobs) == 1 else "Revert these imports?",
            "jobs": [(job, import_job_revert_preview(job)) for job in jobs],
            "action_url": action_url,
            "selected": selected,
        }
        return TemplateResponse(request, "admin/crm/importjob/revert.html", context)

    @admin.action(description="Revert the selected imports", permissions=["add"])
    def revert(self, request, queryset):
        """Asks first, saying what each revert would undo; reverts once confirmed."""
        if request.POST.get("confirmed") != "yes":
            return self.revert_confirmation(
                request,
                list(queryset.defer("file_data")),
                action_url=request.get_full_path(),
                selected=[str(pk) for pk in queryset.values_list("pk", flat=True)],
            )
        for job in queryset:
            try:
                import_job_revert(job=job, actor=request.user)
            except ImportRefused as exc:
                self.message_user(
                    request, f"Job {job.pk}: {' '.join(exc.messages)}", messages.ERROR
                )
            else:
                self.message_user(request, f"Job {job.pk} reverted.")


def job_page(pk: int) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[pk]))


def masked_errors(errors: list[dict], pii_allowed: bool) -> list[dict]:
    """Cell values (and messages quoting them) may be personal data."""
    if pii_allowed:
        return errors
    return [
        {
            **e,
            "value": mask_value(e["value"]),
            "message": mask_text(
                e["message"].replace(e["value"], MASK) if e["value"] else e["message"]
            ),
        }
        for e in errors
    ]


def masked_preview(job: ImportJob, pii_allowed: bool) -> list[dict]:
    if pii_allowed:
        return job.preview
    model = SPECS[job.resource].model
    hidden = set(getattr(model, "PII_FIELDS", ()))
    personal_custom = model is Contact  # a contact's custom field values are personal data
    return [
        {
            **entry,
            "reason": mask_text(entry.get("reason") or ""),
            "changes": {
                name: [mask_value(a), mask_value(b)]
                if name in hidden or (personal_custom and name.startswith(CUSTOM))
                else [a, b]
                for name, (a, b) in entry["changes"].items()
            },
        }
        for entry in job.preview
    ]


@admin.register(DataExport)
class DataExportAdmin(ReadableModelAdmin):
    list_display = [
        "created_at",
        "resource",
        "file_format",
        "row_count",
        "included_pii",
        "exported_by",
    ]
    list_filter = ["resource", "included_pii"]
    list_select_related = ["exported_by"]
    search_fields = ["exported_by__username"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
