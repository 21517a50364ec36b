"""The sales and support work surface: companies, contacts, pipelines, deals, activities,
tickets and tasks."""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import Http404
from django.urls import reverse
from django.utils.html import format_html
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.forms import ExportForm

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.pii import can_view_pii, mask_value
from crm import services
from crm.models import (
    OUT_OF_SIGHT,
    Activity,
    Company,
    Contact,
    ContactMerge,
    Deal,
    DuplicateCandidate,
    Pipeline,
    Stage,
    Tag,
    Task,
    Ticket,
)
from crm.resources import ActivityResource, CompanyResource, ContactResource, DealResource
from crm.selectors import (
    VISIBILITY_RULES,
    deals_stage_totals,
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


class VisibleLinksMixin:
    """Every link to a CRM record with a visibility rule (foreign key or many-to-many; select,
    autocomplete or raw id input) offers and accepts only the records the user sees."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
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


# --- Action bar inputs: the value an action applies -------------------------------------------


def owner_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username"),
        required=False,
        label="Owner",
    )


class OwnerActionForm(ActionForm):
    owner = owner_field()


class TaggableActionForm(OwnerActionForm):
    tag = forms.CharField(required=False, max_length=80, label="Tag")


class ContactActionForm(TaggableActionForm):
    lifecycle_stage = forms.ChoiceField(
        choices=[("", "---------"), *Contact.LifecycleStage.choices],
        required=False,
        label="Lifecycle",
    )


class DealActionForm(OwnerActionForm):
    stage = forms.ModelChoiceField(
        Stage.objects.select_related("pipeline"), required=False, label="Stage"
    )


def action_value(modeladmin, request, name: str):
    """The cleaned action-bar value, or None after telling the user it is missing."""
    form = modeladmin.action_form(request.POST)
    form.fields["action"].choices = modeladmin.get_action_choices(request)
    value = form.cleaned_data.get(name) if form.is_valid() else None
    if value in (None, ""):
        label = form.fields[name].label
        modeladmin.message_user(
            request, f"Choose a {label.lower()} next to the action first.", messages.ERROR
        )
        return None
    return value


@admin.action(description="Assign the chosen owner", permissions=["change"])
def assign_owner(modeladmin, request, queryset):
    owner = action_value(modeladmin, request, "owner")
    if owner is not None:
        count = services.records_assign_owner(queryset=queryset, owner=owner, actor=request.user)
        modeladmin.message_user(request, f"{count} record(s) now owned by {owner}.")


@admin.action(description="Add the typed tag", permissions=["change"])
def add_tag(modeladmin, request, queryset):
    name = action_value(modeladmin, request, "tag")
    if name is not None:
        tag, count = services.records_add_tag(queryset=queryset, name=name, actor=request.user)
        modeladmin.message_user(request, f"Tag {tag} added to {count} record(s).")


@admin.action(description="Change lifecycle stage", permissions=["change"])
def change_lifecycle(modeladmin, request, queryset):
    stage = action_value(modeladmin, request, "lifecycle_stage")
    if stage is not None:
        count = services.contacts_change_lifecycle(
            queryset=queryset, lifecycle_stage=stage, actor=request.user
        )
        modeladmin.message_user(request, f"{count} contact(s) moved to {stage}.")


@admin.action(description="Move to the chosen stage", permissions=["change"])
def change_stage(modeladmin, request, queryset):
    stage = action_value(modeladmin, request, "stage")
    if stage is not None:
        count = services.deals_move_to_stage(queryset=queryset, stage=stage, actor=request.user)
        modeladmin.message_user(request, f"{count} deal(s) moved to {stage}.")


# --- Tags, companies, contacts -----------------------------------------------------------------


@admin.register(Tag)
class TagAdmin(VisibleLinksAdminMixin, ReadableModelAdmin):
    list_display = ["name", "contact_count", "created_at"]
    search_fields = ["name"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                contact_total=Count("contacts", **visible_count(request, Contact, "contacts__"))
            )
        )

    @admin.display(description="contacts", ordering="contact_total")
    def contact_count(self, tag):
        return tag.contact_total


class MaskedContactFormSet(BaseInlineFormSet):
    """Marks the contacts so their names are masked where the inline shows them."""

    def get_queryset(self):
        contacts = super().get_queryset()
        for contact in contacts:
            contact.pii_masked = True
        return contacts


class ContactSummaryInline(VisibleRecordsInlineMixin, admin.TabularInline):
    """Read-only list of contacts (names masked for roles without PII) with links to edit them."""

    model = Contact
    extra = 0
    show_change_link = True
    can_delete = False
    verbose_name_plural = "contacts"
    extra_columns: list[str] = ["job_title", "lifecycle_stage"]

    def has_add_permission(self, request, obj=None):
        return False  # contacts are added on their own page, through the contact service

    def get_formset(self, request, obj=None, **kwargs):
        if not can_view_pii(request.user):
            kwargs["formset"] = MaskedContactFormSet
        return super().get_formset(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if can_view_pii(request.user):
            return ["first_name", "last_name", "email", "phone", *self.extra_columns]
        return ["masked_name", *self.extra_columns]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="name")
    def masked_name(self, contact):
        return mask_value(contact.full_name)


class CompanyContactInline(ContactSummaryInline):
    fk_name = "company"


@admin.register(Company)
class CompanyAdmin(VisibleRecordsAdminMixin, SafeExportMixin, ReadableModelAdmin):
    resource_classes = [CompanyResource]
    list_display = ["name", "domain", "industry", "size", "country", "owner", "updated_at"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter), "size", "country", "industry"]
    search_fields = ["name", "domain"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    autocomplete_fields = ["tags"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [CompanyContactInline]
    action_form = TaggableActionForm
    actions = [assign_owner, add_tag]


class ContactAdminForm(forms.ModelForm):
    """Identifiers are normalised and the suppression list checked before saving, so a bad
    e-mail or phone shows next to its field instead of failing the save."""

    def clean(self):
        cleaned = super().clean()
        if "email" not in self.fields:
            return cleaned  # a role without PII access cannot change identifiers
        try:
            email, phone = services.contact_identifiers_normalize(
                email=cleaned.get("email", ""), phone=cleaned.get("phone", "")
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field, errors)
            return cleaned
        cleaned["email"], cleaned["phone"] = email, phone
        if self.instance.pk is None and services.contact_is_suppressed(email, phone):
            raise ValidationError(
                "This person was erased on request (suppression list); they cannot be re-created."
            )
        return cleaned


class ContactDealInline(VisibleRecordsInlineMixin, admin.TabularInline):
    model = Deal
    extra = 0
    fields = ["name", "stage", "amount", "currency", "status", "expected_close_date", "owner"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False
    verbose_name_plural = "deals (open one to edit it)"

    def has_add_permission(self, request, obj=None):
        return False  # deals follow stage rules: they are edited on their own page

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("stage__pipeline", "owner")


class ContactActivityInline(VisibleRecordsInlineMixin, admin.TabularInline):
    model = Activity
    extra = 1
    fields = ["kind", "subject", "owner", "due_at", "done_at"]
    raw_id_fields = ["owner"]
    fk_name = "contact"
    show_change_link = True
    ordering = ["-created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner")


@admin.register(Contact)
class ContactAdmin(VisibleRecordsAdminMixin, SafeExportMixin, ReadableModelAdmin):
    resource_classes = [ContactResource]
    form = ContactAdminForm
    label_is_personal = True  # a contact is named by its full name
    list_display = [
        "id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "company",
        "lifecycle_stage",
        "owner",
        "updated_at",
    ]
    list_display_links = ["id"]
    list_filter = [
        "lifecycle_stage",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "tags",
        "country",
    ]
    search_fields = ["first_name", "last_name", "email", "=phone", "=external_id", "company__name"]
    list_select_related = ["company", "owner"]
    raw_id_fields = ["owner", "profile"]
    autocomplete_fields = ["company", "tags"]
    readonly_fields = ["profile", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["first_name", "last_name", "email", "phone", "company", "job_title"]}),
        ("Sales", {"fields": ["lifecycle_stage", "owner", "tags", "external_id"]}),
        ("Address", {"fields": ["street", "postal_code", "city", "country", "date_of_birth"]}),
        ("Links", {"fields": ["profile", "created_at", "updated_at"]}),
    ]
    pii_fields = Contact.PII_FIELDS
    inlines = [ContactDealInline, ContactActivityInline]
    action_form = ContactActionForm
    actions = [assign_owner, add_tag, change_lifecycle]

    def get_object(self, request, object_id, from_field=None):
        contact = super().get_object(request, object_id, from_field)
        if contact is not None and not self.may_view_pii(request):
            contact.pii_masked = True  # the page title and breadcrumbs show no name
        return contact

    def save_model(self, request, obj, form, change):
        services.contact_save(contact=obj)


# --- Pipelines and deals ------------------------------------------------------------------------


class StageInline(VisibleLinksInlineMixin, admin.TabularInline):
    model = Stage
    extra = 1
    fields = ["order", "name", "probability", "is_won", "is_lost"]
    ordering = ["order"]


@admin.register(Pipeline)
class PipelineAdmin(VisibleLinksAdminMixin, ReadableModelAdmin):
    list_display = ["name", "stage_count", "deal_count", "created_at"]
    search_fields = ["name"]
    inlines = [StageInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                stage_total=Count("stages", distinct=True),
                deal_total=Count("deals", distinct=True, **visible_count(request, Deal, "deals__")),
            )
        )

    @admin.display(description="stages", ordering="stage_total")
    def stage_count(self, pipeline):
        return pipeline.stage_total

    @admin.display(description="deals", ordering="deal_total")
    def deal_count(self, pipeline):
        return pipeline.deal_total


@admin.register(Stage)
class StageAdmin(VisibleLinksAdminMixin, ReadableModelAdmin):
    """Stages are edited inside their pipeline; this page serves look-ups and stage filters."""

    list_display = ["name", "pipeline", "order", "probability", "is_won", "is_lost"]
    list_filter = ["pipeline"]
    search_fields = ["name", "pipeline__name"]
    list_select_related = ["pipeline"]
    ordering = ["pipeline__name", "order"]


class DealAdminForm(forms.ModelForm):
    """A stage from another pipeline is refused next to the stage field."""

    def clean(self):
        cleaned = super().clean()
        stage, pipeline = cleaned.get("stage"), cleaned.get("pipeline")
        if stage and pipeline and stage.pipeline_id != pipeline.pk:
            self.add_error("stage", f"Stage {stage.name!r} belongs to pipeline {stage.pipeline}.")
        return cleaned


@admin.register(Deal)
class DealAdmin(VisibleRecordsAdminMixin, SafeExportMixin, ReadableModelAdmin):
    resource_classes = [DealResource]
    pii_fields = ("contact",)  # a contact shows as its name
    form = DealAdminForm
    change_list_template = "admin/crm/deal/change_list.html"
    list_display = [
        "name",
        "stage",
        "amount",
        "currency",
        "probability",
        "status",
        "company",
        "contact",
        "owner",
        "expected_close_date",
    ]
    list_filter = [
        "pipeline",
        "stage",
        "status",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "currency",
    ]
    search_fields = ["name", "company__name"]
    list_select_related = ["stage__pipeline", "company", "contact", "owner"]
    raw_id_fields = ["owner"]
    autocomplete_fields = ["pipeline", "stage", "company", "contact"]
    readonly_fields = ["closed_at", "created_at", "updated_at"]
    date_hierarchy = "expected_close_date"
    action_form = DealActionForm
    actions = [assign_owner, change_stage]

    def save_model(self, request, obj, form, change):
        services.deal_save(deal=obj, stage_changed=not change or "stage" in form.changed_data)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["stage_totals"] = deals_stage_totals(context["cl"].queryset)
        return response


# --- Activities, tickets, tasks -----------------------------------------------------------------


@admin.register(Activity)
class ActivityAdmin(VisibleRecordsAdminMixin, SafeExportMixin, ReadableModelAdmin):
    resource_classes = [ActivityResource]
    pii_fields = ("contact",)  # a contact shows as its name
    list_display = ["subject", "kind", "contact", "deal", "company", "owner", "due_at", "done_at"]
    list_filter = [
        "kind",
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("done_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["subject"]
    list_select_related = ["contact", "deal", "company", "owner"]
    raw_id_fields = ["owner"]
    autocomplete_fields = ["contact", "deal", "company"]
    readonly_fields = ["created_at", "updated_at"]
    action_form = OwnerActionForm
    actions = [assign_owner]


@admin.register(Ticket)
class TicketAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    pii_fields = ("contact",)  # a contact shows as its name
    list_display = ["subject", "status", "priority", "channel", "contact", "company", "owner"]
    list_filter = ["status", "priority", "channel", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["subject"]
    list_select_related = ["contact", "company", "owner"]
    raw_id_fields = ["owner"]
    autocomplete_fields = ["contact", "company"]
    readonly_fields = ["created_at", "updated_at"]
    action_form = OwnerActionForm
    actions = [assign_owner]


@admin.register(Task)
class TaskAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    pii_fields = ("contact",)  # a contact shows as its name
    list_display = ["title", "priority", "contact", "deal", "owner", "due_at", "done_at"]
    list_filter = [
        "priority",
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("done_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["title"]
    list_select_related = ["contact", "deal", "owner"]
    raw_id_fields = ["owner"]
    autocomplete_fields = ["contact", "deal"]
    readonly_fields = ["created_at", "updated_at"]
    action_form = OwnerActionForm
    actions = [assign_owner]


# --- Duplicates ---------------------------------------------------------------------------------


@admin.register(DuplicateCandidate)
class DuplicateCandidateAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    """The review queue: merge a pair (the older contact survives) or mark it as distinct."""

    list_display = [
        "__str__",
        "contact_a",
        "contact_b",
        "score",
        "reason_list",
        "status",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["contact_a", "contact_b"]
    raw_id_fields = ["contact_a", "contact_b"]
    readonly_fields = ["contact_a", "contact_b", "score", "reasons", "status", "reviewed_at"]
    search_fields = ["=contact_a__id", "=contact_b__id"]
    actions = ["merge", "dismiss"]

    def get_list_display(self, request):
        allowed = self.may_view_pii(request)
        columns = super().get_list_display(request)
        return [
            contact_link(name, allowed) if name in ("contact_a", "contact_b") else name
            for name in columns
        ]

    def has_add_permission(self, request):
        return False  # the queue is filled by find_duplicates --save

    @admin.display(description="reasons")
    def reason_list(self, candidate):
        return ", ".join(candidate.reasons)

    @admin.action(description="Merge (the older contact survives)", permissions=["change"])
    def merge(self, request, queryset):
        merged = 0
        for candidate in queryset.filter(status=DuplicateCandidate.Status.OPEN):
            survivor, other = candidate.contact_a, candidate.contact_b  # a has the lower id
            services.contact_merge(survivor=survivor, merged=other, merged_by=request.user)
            merged += 1
        self.message_user(request, f"{merged} pair(s) merged.")

    @admin.action(description="Not duplicates", permissions=["change"])
    def dismiss(self, request, queryset):
        count = services.duplicates_dismiss(queryset=queryset, actor=request.user)
        self.message_user(request, f"{count} pair(s) dismissed.")


def contact_link(attribute: str, pii_allowed: bool):
    @admin.display(description="first contact" if attribute == "contact_a" else "second contact")
    def show(candidate):
        contact = getattr(candidate, attribute)
        if contact is None:
            return "-"
        label = str(contact) if pii_allowed else f"Contact {contact.pk}"
        url = reverse("admin:crm_contact_change", args=[contact.pk])
        return format_html('<a href="{}">{}</a>', url, label)

    return show


@admin.register(ContactMerge)
class ContactMergeAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    list_display = ["__str__", "survivor", "merged_by", "created_at"]
    list_select_related = ["survivor", "merged_by"]
    raw_id_fields = ["survivor"]
    readonly_fields = ["survivor", "merged_id", "merged_data", "moved", "merged_by", "created_at"]
    pii_json_fields = ("merged_data",)
    pii_fields = ("survivor",)
    search_fields = ["=merged_id", "=survivor__id"]

    def has_add_permission(self, request):
        return False
