"""Tracking plans: the plan page (its events with their JSON Schemas, the sources following it
and what a violation does, its violations of the last days with examples), the list of
violations, and what a source sends with a draft plan generated from it. The rules are
``profiles.ingest.plans``'s; the forms ask it."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, Sum
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from cdphub.admin_mixins import ReadableModelAdmin, ViewOnlyAdminMixin
from profiles.ingest import plans
from profiles.models import (
    Source,
    TrackingPlan,
    TrackingPlanEvent,
    TrackingPlanSource,
    TrackingPlanViolation,
)

SUMMARY_DAYS = 7


class TrackingPlanEventForm(forms.ModelForm):
    class Meta:
        model = TrackingPlanEvent
        fields = ["type", "name", "description", "schema"]
        widgets = {"schema": forms.Textarea(attrs={"rows": 6, "cols": 70})}

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("schema") is None and "schema" not in self.errors:
            cleaned["schema"] = {}  # left empty: any properties
        if self.errors:
            return cleaned
        event = {key: cleaned.get(key) for key in ("type", "name", "schema")}
        for field, problems in plans.event_errors(event).items():
            for problem in problems:
                self.add_error(field, problem)
        return cleaned


class TrackingPlanEventInline(admin.StackedInline):
    model = TrackingPlanEvent
    form = TrackingPlanEventForm
    extra = 1


class TrackingPlanSourceInline(admin.TabularInline):
    model = TrackingPlanSource
    fields = ["source", "violation_action", "unplanned_event_action"]
    autocomplete_fields = ["source"]
    extra = 1
    verbose_name = "source following this plan"
    verbose_name_plural = "sources following this plan (a source follows at most one plan)"


@admin.register(TrackingPlan)
class TrackingPlanAdmin(ReadableModelAdmin):
    list_display = ["name", "status", "version", "source_names", "recent_violations", "updated_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = ["version", "created_by", "created_at", "updated_at", "violations_table"]
    fieldsets = [
        (None, {"fields": ["name", "description", "status", "version"]}),
        (f"Violations of the last {SUMMARY_DAYS} days", {"fields": ["violations_table"]}),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    inlines = [TrackingPlanEventInline, TrackingPlanSourceInline]
    pii_displays = ("violations_table",)
    change_list_template = "admin/profiles/trackingplan/change_list.html"

    def get_queryset(self, request):
        since = timezone.now().date() - timedelta(days=SUMMARY_DAYS - 1)
        return (
            super()
            .get_queryset(request)
            .prefetch_related("sources__source")
            .annotate(
                violation_count=Sum("violations__count", filter=Q(violations__day__gte=since))
            )
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing counted yet
            return [fieldsets[0]]
        return fieldsets

    @admin.display(description="sources")
    def source_names(self, plan):
        return ", ".join(link.source.name for link in plan.sources.all()) or "-"

    @admin.display(description=f"violations ({SUMMARY_DAYS} days)", ordering="violation_count")
    def recent_violations(self, plan):
        count = plan.violation_count or 0
        if not count:
            return 0
        url = reverse("admin:profiles_trackingplanviolation_changelist")
        return format_html('<a href="{}?plan__id__exact={}">{}</a>', url, plan.pk, count)

    @admin.display(description="per source, event, property and kind")
    def violations_table(self, plan, pii: bool):
        if plan.pk is None:
            return "-"
        summary = plans.violations_summary(plan=plan, days=SUMMARY_DAYS)
        names = dict(Source.objects.values_list("pk", "name"))
        kinds = dict(TrackingPlanViolation.Kind.choices)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{} {}</td><td><code>{}</code></td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    names.get(row["source"], row["source"]),
                    row["event_type"],
                    row["event_name"],
                    row["property"] or "-",
                    kinds.get(row["kind"], row["kind"]),
                    row["count"],
                    row["blocked"],
                    examples_html(plans.examples_shown(row["examples"], pii=pii)),
                )
                for row in summary
            ),
        )
        url = reverse("admin:profiles_trackingplanviolation_changelist")
        return format_html(
            "<table><thead><tr><th>source</th><th>event</th><th>property</th><th>kind</th>"
            "<th>events</th><th>blocked</th><th>latest examples</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}?plan__id__exact={}">All violations of '
            "this plan, per day</a></p>",
            rows or mark_safe('<tr><td colspan="8">none</td></tr>'),  # noqa: S308
            url,
            plan.pk,
        )

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        plans.tracking_plan_changed(
            plan=form.instance, actor=request.user, note="in the admin", created=not change
        )

    def delete_model(self, request, obj):
        plans.tracking_plan_delete(plan=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for plan in queryset:
            plans.tracking_plan_delete(plan=plan, actor=request.user)

    # -- what a source sends, and a draft plan of it --------------------------------------------

    def get_urls(self):
        observed = self.admin_site.admin_view(self.observed_view)
        return [
            path("observed/", observed, name="profiles_trackingplan_observed"),
            *super().get_urls(),
        ]

    def observed_view(self, request):
        """A source's observed events and property types; POST: a draft plan of them."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ObservedForm(request.POST or request.GET or None)
        observed = None
        if form.is_bound and form.is_valid():
            source, days = form.cleaned_data["source"], form.cleaned_data["days"]
            if request.method == "POST":
                if not self.has_add_permission(request):
                    raise PermissionDenied
                try:
                    plan = plans.tracking_plan_generate(
                        source=source,
                        name=form.cleaned_data["name"],
                        days=days,
                        actor=request.user,
                    )
                except ValidationError as refused:
                    for field, problems in refused.message_dict.items():
                        form.add_error(field if field in form.fields else None, problems)
                else:
                    self.message_user(
                        request,
                        f"Draft plan {plan.name!r} created from {len(plan.events.all())} "
                        "observed events: review it, then make it active.",
                        messages.SUCCESS,
                    )
                    return redirect("admin:profiles_trackingplan_change", plan.pk)
            observed = plans.observed_events(source=source, days=days)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "observed": observed,
            "sample": plans.OBSERVED_SAMPLE,
            "can_generate": self.has_add_permission(request),
            "title": "What a source sends",
        }
        return TemplateResponse(request, "admin/profiles/trackingplan/observed.html", context)


class ObservedForm(forms.Form):
    source = forms.ModelChoiceField(queryset=Source.objects.order_by("name"))
    days = forms.IntegerField(
        min_value=1,
        max_value=90,
        initial=plans.OBSERVED_DAYS,
        help_text=f"The last days read (at most {plans.OBSERVED_SAMPLE:,} events, the newest "
        "days first).",
    )
    name = forms.CharField(
        max_length=200,
        required=False,
        help_text="Of the draft plan; default: the source's name and today's date.",
    )


def examples_html(examples: list[dict]):
    return format_html_join(
        mark_safe("<br>"),  # noqa: S308
        "<code>{}</code> ({}) message <code>{}</code>{}",
        (
            (
                plans.example_text(example.get("value")),
                example.get("expected", ""),
                example.get("message_id", ""),
                " blocked" if example.get("blocked") else "",
            )
            for example in examples
        ),
    )


@admin.register(TrackingPlanViolation)
class TrackingPlanViolationAdmin(ViewOnlyAdminMixin, ReadableModelAdmin):
    list_display = [
        "day",
        "plan",
        "source",
        "event_type",
        "event_name",
        "property",
        "kind",
        "count",
        "blocked",
        "last_seen_at",
    ]
    list_filter = ["kind", "event_type", "plan", "source"]
    list_select_related = ["plan", "source"]
    search_fields = ["event_name", "property"]
    date_hierarchy = "day"
    fields = [
        "day",
        "plan",
        "source",
        "event_type",
        "event_name",
        "property",
        "kind",
        "count",
        "blocked",
        "first_seen_at",
        "last_seen_at",
        "examples_list",
    ]
    readonly_fields = fields
    pii_displays = ("examples_list",)

    @admin.display(description="latest examples")
    def examples_list(self, violation, pii: bool):
        return examples_html(plans.examples_shown(violation.examples, pii=pii)) or "-"
