"""The privacy office's admin: purposes and their texts, the consent ledger (append-only) and
state, data subject requests (verify, run, download), restrictions (lifted by an action),
suppression, retention and the register of processing activities.

One module: the classes are short, and a privacy officer's whole workflow reads in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from cdphub.admin_mixins import ReadableModelAdmin, ViewOnlyAdminMixin
from consent.dsar import (
    TRANSITIONS,
    DsarError,
    dsar_create,
    dsar_erasure_preview,
    dsar_extend,
    dsar_reject,
    dsar_result_open,
    dsar_verify,
    restriction_lift,
)
from consent.exports import write_register_csv
from consent.hashing import suppression_hash
from consent.models import (
    ConsentRecord,
    ConsentState,
    ConsentText,
    DataSubjectRequest,
    DataSubjectRequestAction,
    ProcessingActivity,
    ProcessingRestriction,
    Purpose,
    RetentionPolicy,
    Suppression,
)
from consent.services import ConsentError, consent_record
from consent.tasks import process_data_subject_request_task, purge_retention_category_task
from profiles.models import Identity

OVERDUE_STYLE = "color:#ba2121;font-weight:bold"


class ConsentTextInline(admin.TabularInline):
    model = ConsentText
    extra = 0
    fields = ["version", "text", "published_at"]
    can_delete = False  # records point at the text they showed; a used version stays


@admin.register(Purpose)
class PurposeAdmin(ReadableModelAdmin):
    list_display = [
        "code",
        "name",
        "lawful_basis",
        "is_marketing",
        "requires_express_written",
        "is_active",
    ]
    list_filter = ["lawful_basis", "is_marketing", "is_active"]
    search_fields = ["code", "name"]
    readonly_fields = ["created_at"]
    inlines = [ConsentTextInline]

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger references purposes; deactivate instead


class ConsentRecordAddForm(forms.ModelForm):
    """Adding a record goes through the consent service (validation, SMS rules, current state);
    its errors are shown on the field they concern."""

    shown_text_version = forms.CharField(
        label="Text version",
        required=False,
        help_text="Version of the consent text shown; empty: the current one.",
    )
    form_url = forms.URLField(
        required=False,
        max_length=1000,
        assume_scheme="https",
        help_text="The page the consent was given on (proof).",
    )

    class Meta:
        model = ConsentRecord
        fields = [
            "profile",
            "purpose",
            "status",
            "method",
            "source",
            "occurred_at",
            "identifier_kind",
            "identifier_value",
            "ip_address",
            "user_agent",
            "form_url",
            "tcf_string",
            "tcf_vendor_list_version",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].required = True

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        proof = {
            name: cleaned.get(name)
            for name in ("identifier_kind", "identifier_value", "user_agent", "form_url")
            if cleaned.get(name)
        }
        try:
            with transaction.atomic():
                self.record = consent_record(
                    profile=cleaned["profile"],
                    purpose=cleaned["purpose"],
                    status=cleaned["status"],
                    method=cleaned["method"],
                    source=cleaned.get("source") or "",
                    occurred_at=cleaned.get("occurred_at"),
                    text_version=cleaned.get("shown_text_version") or None,
                    ip_address=cleaned.get("ip_address") or None,
                    tcf_string=cleaned.get("tcf_string") or "",
                    tcf_vendor_list_version=cleaned.get("tcf_vendor_list_version"),
                    recorded_by=self.request_user,
                    **proof,
                )
        except ConsentError as error:
            field = error.field if error.field in self.fields else None
            raise ValidationError({field: error.message} if field else error.message) from None
        return cleaned


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadableModelAdmin):
    """The ledger: records are added (through the service), never changed or deleted."""

    list_display = [
        "occurred_at",
        "profile",
        "purpose",
        "status",
        "method",
        "source",
        "identifier_value",
    ]
    list_filter = ["status", "method", "purpose"]
    search_fields = ["=profile__id", "=identifier_value"]
    search_help_text = "Profile id or the exact identifier the consent was given for."
    list_select_related = ["profile", "purpose"]
    raw_id_fields = ["profile"]
    date_hierarchy = "occurred_at"
    pii_fields = ("identifier_value", "ip_address", "user_agent", "form_url")
    add_form = ConsentRecordAddForm

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            fields = [*ConsentRecordAddForm.Meta.fields]
            fields.insert(fields.index("identifier_kind"), "shown_text_version")
            if self.may_view_pii(request):
                return fields
            return [name for name in fields if name not in self.pii_fields]
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []  # the add form: nothing masked is offered to a role without PII access
        return super().get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        obj.pk = form.record.pk  # written by the service in the form's clean()
        obj.recorded_at = form.record.recorded_at

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ConsentState)
class ConsentStateAdmin(ViewOnlyAdminMixin, ReadableModelAdmin):
    """Derived from the ledger; read-only here."""

    list_display = ["id", "profile", "purpose", "status", "updated_at", "record"]
    list_filter = ["status", "purpose"]
    search_fields = ["=profile__id"]
    list_select_related = ["profile", "purpose", "record"]
    raw_id_fields = ["profile", "record"]


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue"), ("no", "On time")]

    def queryset(self, request, queryset):
        overdue = {"status__in": OPEN_STATUSES, "due_at__lt": timezone.now()}
        if self.value() == "yes":
            return queryset.filter(**overdue)
        if self.value() == "no":
            return queryset.exclude(**overdue)
        return queryset


OPEN_STATUSES = [
    DataSubjectRequest.Status.RECEIVED,
    DataSubjectRequest.Status.VERIFIED,
    DataSubjectRequest.Status.IN_PROGRESS,
]


class DataSubjectRequestAddForm(forms.ModelForm):
    """Creating a request goes through the request service (normalised identifiers, due date,
    the first audit row); its errors show on the field they concern."""

    class Meta:
        model = DataSubjectRequest
        fields = [
            "kind",
            "subject_email",
            "subject_phone",
            "subject_user_id",
            "profile",
            "received_at",
            "details",
            "corrections",
        ]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            with transaction.atomic():
                self.created = dsar_create(
                    kind=cleaned.get("kind", ""),
                    email=cleaned.get("subject_email", ""),
                    phone=cleaned.get("subject_phone", ""),
                    user_id=cleaned.get("subject_user_id", ""),
                    profile=cleaned.get("profile"),
                    details=cleaned.get("details", ""),
                    corrections=cleaned.get("corrections") or None,
                    received_at=cleaned.get("received_at"),
                    actor=self.request_user,
                )
        except ConsentError as error:
            field = error.field if error.field in self.fields else None
            raise ValidationError({field: error.message} if field else error.message) from None
        return cleaned


class DataSubjectRequestActionInline(admin.TabularInline):
    model = DataSubjectRequestAction
    extra = 0
    fields = ["created_at", "action", "from_status", "to_status", "actor_label", "note"]
    readonly_fields = fields
    can_delete = False
    ordering = ["created_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False


def _text_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text=help_text
    )


class VerifyStepForm(forms.Form):
    note = _text_field(
        "How the person's identity was checked, e.g. a reply from the e-mail address on file, "
        "or an ID document seen (not kept). Kept in the request's trail."
    )


class ExtendStepForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=62, help_text="Days added to the due date.")
    reason = _text_field(
        "Why more time is needed (complexity, number of requests). The person is told."
    )


class RejectStepForm(forms.Form):
    reason = _text_field(
        "Why the request is refused (manifestly unfounded, excessive, identity not confirmed). "
        "The person is told."
    )


class RunStepForm(forms.Form):
    """Nothing to fill in: the page says what running does, the button confirms."""


@dataclass(frozen=True)
class RequestStep:
    name: str
    label: str
    form: type[forms.Form] | None  # None: a page to read, no button
    # The statuses it moves the request towards: offered when the request service's
    # transitions allow one of them from the request's status (empty: any open request).
    leads_to: frozenset[str] = frozenset()
    kinds: tuple[str, ...] = ()  # empty: every kind

    def offered(self, request_) -> bool:
        allowed = TRANSITIONS[request_.status]
        reachable = bool(allowed & self.leads_to) if self.leads_to else bool(allowed)
        return reachable and (not self.kinds or request_.kind in self.kinds)


_Status = DataSubjectRequest.Status
# The steps a request's page offers, in order.
REQUEST_STEPS = (
    RequestStep("verify", "Verify identity", VerifyStepForm, frozenset({_Status.VERIFIED})),
    RequestStep("preview", "Preview the erasure", None, kinds=(DataSubjectRequest.Kind.ERASURE,)),
    RequestStep("run", "Run", RunStepForm, frozenset({_Status.IN_PROGRESS, _Status.COMPLETED})),
    RequestStep("extend", "Extend the due date", ExtendStepForm),
    RequestStep("reject", "Reject", RejectStepForm, frozenset({_Status.REJECTED})),
)


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(ReadableModelAdmin):
    """Requests are created here or by the API, verified, then run as a background job."""

    inlines = [DataSubjectRequestActionInline]
    actions = ["verify_requests", "process_requests"]
    list_display = [
        "id",
        "kind",
        "status",
        "subject_email",
        "subject_phone",
        "profile",
        "received_at",
        "due",
        "completed_at",
    ]
    list_filter = ["kind", "status", OverdueFilter]
    search_fields = ["=id", "=subject_email", "=subject_phone", "=subject_user_id"]
    list_select_related = ["profile", "created_by"]
    raw_id_fields = ["profile"]
    date_hierarchy = "received_at"
    pii_fields = ("subject_email", "subject_phone", "subject_user_id", "details")
    pii_displays = ("result_download",)
    exclude = ["result_file"]  # written by the request's processing; downloaded by its link
    readonly_fields = [
        "status",
        "verified_at",
        "completed_at",
        "rejection_reason",
        "result_download",
        "created_by",
        "created_at",
        "updated_at",
    ]

    # A request that was completed or rejected is the evidence of how it was handled: locked.
    LOCKED = (DataSubjectRequest.Status.COMPLETED, DataSubjectRequest.Status.REJECTED)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status in self.LOCKED:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status in self.LOCKED:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="result file")
    def result_download(self, request_, pii: bool):
        if not request_.result_file:
            return "-"
        if not pii:
            return "(the person's data: needs the personal data permission)"
        url = reverse("admin:consent_datasubjectrequest_result", args=[request_.pk])
        return format_html('<a href="{}">Download {}</a>', url, request_.result_file.name)

    def get_urls(self):
        result = path(
            "<int:pk>/result/",
            self.admin_site.admin_view(self.result_view),
            name="consent_datasubjectrequest_result",
        )
        steps = [
            path(
                f"<int:pk>/{step.name}/",
                self.admin_site.admin_view(self.step_view),
                {"step": step.name},
                name=f"consent_datasubjectrequest_{step.name}",
            )
            for step in REQUEST_STEPS
        ]
        return [result, *steps, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        request_ = self.get_object(request, object_id)
        steps = []
        if request_ is not None and self.has_change_permission(request, request_):
            steps = [
                {
                    "label": step.label,
                    "url": reverse(
                        f"admin:consent_datasubjectrequest_{step.name}", args=[request_.pk]
                    ),
                }
                for step in self._steps_of(request_)
            ]
        extra_context = {**(extra_context or {}), "request_steps": steps}
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _steps_of(request_) -> list[RequestStep]:
        return [step for step in REQUEST_STEPS if step.offered(request_)]

    def step_view(self, request, pk: int, step: str):
        """One step of handling a request, from its page: a form (or, for the preview, a page
        to read) that calls the request service; its refusals show on the form."""
        request_ = get_object_or_404(DataSubjectRequest, pk=pk)
        if not self.has_change_permission(request, request_):
            raise PermissionDenied  # completed and rejected requests are locked
        found = [s for s in self._steps_of(request_) if s.name == step]
        if not found:
            self.message_user(
                request,
                f"Request #{request_.pk} is {request_.get_status_display().lower()}: "
                f"it cannot be {step}.",
                messages.ERROR,
            )
            return redirect("admin:consent_datasubjectrequest_change", request_.pk)
        data = request.POST if request.method == "POST" else None  # the run form has no fields
        form = found[0].form(data) if found[0].form else None
        if form is not None and request.method == "POST" and form.is_valid():
            try:
                done = self._step_do(step, request_, form.cleaned_data, request.user)
            except ConsentError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                self.message_user(request, done, messages.SUCCESS)
                return redirect("admin:consent_datasubjectrequest_change", request_.pk)
        erasure = request_.kind == DataSubjectRequest.Kind.ERASURE
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": request_,
            "form": form,
            "step": found[0],
            "preview": dsar_erasure_preview(request=request_) if erasure else None,
            "may_run": "run" in [s.name for s in self._steps_of(request_)],
            "title": f"{found[0].label}: request #{request_.pk}",
        }
        return TemplateResponse(request, "admin/consent/datasubjectrequest/step.html", context)

    def _step_do(self, step: str, request_, data: dict, user) -> str:
        if step == "verify":
            dsar_verify(request=request_, actor=user, note=data["note"])
            return f"Request #{request_.pk}: identity verified. It can be run now."
        if step == "extend":
            request_ = dsar_extend(
                request=request_, days=data["days"], reason=data["reason"], actor=user
            )
            return f"Request #{request_.pk} is now due on {request_.due_at:%Y-%m-%d}."
        if step == "reject":
            dsar_reject(request=request_, reason=data["reason"], actor=user)
            return f"Request #{request_.pk} was rejected."
        self._run_queue(request_, user)
        return f"Request #{request_.pk} was started; its status below says where it is."

    @staticmethod
    def _run_queue(request_, user) -> None:
        if request_.status not in ("verified", "in_progress"):
            raise DsarError(f"request #{request_.pk} is {request_.status}: verify it first")
        actor_id = user.pk
        transaction.on_commit(
            lambda: process_data_subject_request_task.delay(request_.pk, actor_id)
        )

    def result_view(self, request, pk: int):
        """The access/portability file, served only here (never from a public media URL) to
        those who may view requests and personal data; each download is recorded."""
        request_ = get_object_or_404(DataSubjectRequest, pk=pk)
        if not (self.has_view_permission(request, request_) and self.may_view_pii(request)):
            raise PermissionDenied
        try:
            file = dsar_result_open(request=request_, actor=request.user)
        except DsarError as error:
            raise Http404(error.message) from None
        return FileResponse(
            file, as_attachment=True, filename=request_.result_file.name.rsplit("/", 1)[-1]
        )

    @admin.display(description="due", ordering="due_at")
    def due(self, request_):
        text = request_.due_at.strftime("%Y-%m-%d")
        if request_.is_overdue:
            return format_html('<span style="{}">{} (overdue)</span>', OVERDUE_STYLE, text)
        return text

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:  # who asked and what is fixed once received; status moves by action
            readonly += ["kind", "received_at", "due_at", "extension_reason"]
        return readonly

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = DataSubjectRequestAddForm
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user
        return form

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        obj.pk = form.created.pk  # written by the service in the form's clean()
        obj.due_at = form.created.due_at

    @admin.action(description="Verify identity of the selected requests")
    def verify_requests(self, request, queryset):
        self._each(request, queryset, lambda r: dsar_verify(request=r, actor=request.user))

    @admin.action(description="Run the selected verified requests (background job)")
    def process_requests(self, request, queryset):
        self._each(request, queryset, lambda request_: self._run_queue(request_, request.user))

    def _each(self, request, queryset, step) -> None:
        done = 0
        for request_ in queryset:
            try:
                step(request_)
                done += 1
            except ConsentError as error:
                self.message_user(request, error.message, messages.ERROR)
        if done:
            self.message_user(request, f"{done} request(s) done.", messages.SUCCESS)


@admin.register(DataSubjectRequestAction)
class DataSubjectRequestActionAdmin(ViewOnlyAdminMixin, ReadableModelAdmin):
    """The audit trail of requests: written by the request services only."""

    list_display = [
        "id",
        "request",
        "action",
        "from_status",
        "to_status",
        "actor_label",
        "created_at",
    ]
    list_filter = ["action"]
    search_fields = ["=request__id", "actor_label"]
    list_select_related = ["request"]
    raw_id_fields = ["request", "actor"]


@admin.register(ProcessingRestriction)
class ProcessingRestrictionAdmin(ViewOnlyAdminMixin, ReadableModelAdmin):
    """Profiles whose processing is restricted (Art. 18), set by restriction requests; lifted
    with the action, which logs it on the request and in the audit trail."""

    list_display = ["id", "profile", "reason", "request", "created_at"]
    search_fields = ["=profile__id"]
    list_select_related = ["profile", "request"]
    raw_id_fields = ["profile", "request"]
    actions = ["lift"]

    def has_lift_permission(self, request) -> bool:
        return request.user.has_perm("consent.delete_processingrestriction")

    @admin.action(permissions=["lift"], description="Lift the selected restrictions")
    def lift(self, request, queryset):
        lifted = sum(
            restriction_lift(profile=restriction.profile, actor=request.user)
            for restriction in queryset.select_related("profile")
        )
        self.message_user(request, f"{lifted} restriction(s) lifted.", messages.SUCCESS)


@admin.register(Suppression)
class SuppressionAdmin(ViewOnlyAdminMixin, ReadableModelAdmin):
    """Salted hashes of erased identifiers: written by erasure only."""

    list_display = ["id", "identifier_kind", "short_hash", "reason", "request", "created_at"]
    list_filter = ["identifier_kind"]
    search_fields = ["=value_hash"]
    search_help_text = (
        "Type the e-mail address, phone number or user id as you know it: it is normalised and "
        "hashed the same way before the look-up (a hash is found too)."
    )
    list_select_related = ["request"]
    raw_id_fields = ["request"]

    def get_search_results(self, request, queryset, search_term):
        """The identifier typed, hashed as erasure hashed it (its kind is not needed: each kind
        is tried); nothing typed is stored or logged."""
        term = search_term.strip()
        if not term:
            return queryset, False
        hashes = {suppression_hash(kind, term) for kind in Identity.Kind.values}
        if re.fullmatch(r"[0-9a-f]{64}", term):
            hashes.add(term)
        return queryset.filter(value_hash__in=hashes), False

    @admin.display(description="hash")
    def short_hash(self, suppression):
        return f"{suppression.value_hash[:16]}…"


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(ReadableModelAdmin):
    """Purged nightly by Celery beat; the last run and its count show what went when."""

    list_display = ["category", "retention_days", "is_active", "last_run_at", "last_purged_count"]
    list_filter = ["is_active"]
    search_fields = ["category"]
    readonly_fields = ["last_run_at", "last_purged_count"]
    actions = ["purge_now"]

    @admin.action(description="Purge the selected categories now (background job)")
    def purge_now(self, request, queryset):
        categories = list(queryset.filter(is_active=True).values_list("category", flat=True))
        for category in categories:
            transaction.on_commit(
                lambda category=category: purge_retention_category_task.delay(category)
            )
        self.message_user(request, f"Purge queued for: {', '.join(categories) or 'nothing'}.")


@admin.register(ProcessingActivity)
class ProcessingActivityAdmin(ReadableModelAdmin):
    list_display = ["name", "lawful_basis", "controller", "data_subjects", "updated_at"]
    list_filter = ["lawful_basis"]
    search_fields = ["name", "description"]
    filter_horizontal = ["purposes"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["export_csv"]

    @admin.action(description="Export the register (CSV)")
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="processing-activities.csv"'
        write_register_csv(response, queryset.prefetch_related("purposes"))
        return response
