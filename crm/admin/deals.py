"""Pipelines, their stages, and deals (totals per stage above the list)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from cdphub.admin_mixins import ReadableModelAdmin
from crm import services
from crm.admin.actions import (
    DealActionForm,
    assign_owner,
    change_stage,
)
from crm.admin.board import PipelineBoardMixin
from crm.admin.customfields import CustomFieldsAdminMixin
from crm.admin.visibility import (
    SafeExportMixin,
    VisibleLinksAdminMixin,
    VisibleLinksInlineMixin,
    VisibleRecordsAdminMixin,
    visible_count,
)
from crm.admin.work import RecordPageMixin, activity_buttons
from crm.models import (
    Deal,
    Pipeline,
    Stage,
)
from crm.resources import DealResource
from crm.selectors import (
    deals_stage_totals,
)

# --- Pipelines and deals ------------------------------------------------------------------------


class StageInline(VisibleLinksInlineMixin, admin.TabularInline):
    model = Stage
    extra = 1
    fields = ["order", "name", "probability", "is_won", "is_lost"]
    ordering = ["order"]


@admin.register(Pipeline)
class PipelineAdmin(VisibleLinksAdminMixin, ReadableModelAdmin):
    list_display = ["name", "stage_count", "deal_count", "board", "created_at"]
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

    @admin.display(description="board")
    def board(self, pipeline):
        url = reverse("admin:crm_deal_board")
        return format_html('<a href="{}?pipeline={}">Open the board</a>', url, pipeline.pk)


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
class DealAdmin(
    PipelineBoardMixin,
    CustomFieldsAdminMixin,
    RecordPageMixin,
    VisibleRecordsAdminMixin,
    SafeExportMixin,
    ReadableModelAdmin,
):
    resource_classes = [DealResource]
    pii_fields = ("contact",)  # a contact shows as its name
    form = DealAdminForm
    change_list_template = "admin/crm/deal/change_list.html"
    # Fits a 1440 px screen with the filters beside it; probability is on the deal's page.
    list_display = [
        "name",
        "stage",
        "amount_shown",
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
    autocomplete_fields = ["pipeline", "stage", "company", "contact"]
    readonly_fields = ["log_activity", "closed_at", "stage_entered_at", "created_at", "updated_at"]

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, deal):
        return f"{deal.currency} {deal.amount:,.2f}" if deal.amount is not None else "-"

    @admin.display(description="log")
    def log_activity(self, deal):
        if deal.pk is None:
            return "-"
        page = reverse("admin:crm_deal_change", args=[deal.pk])
        return activity_buttons(
            page, deal=deal.pk, contact=deal.contact_id, company=deal.company_id
        )

    date_hierarchy = "expected_close_date"
    action_form = DealActionForm
    actions = [assign_owner, change_stage]

    def save_model(self, request, obj, form, change):
        services.deal_save(deal=obj, actor=request.user)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["stage_totals"] = deals_stage_totals(context["cl"].queryset)
        return response
