"""Admin of event collection and identity resolution: rejected messages (retry), the merge
conflict queue (approve / reject), merges (undo), manual merge of profiles, events received per
day on the source page and the profile's event timeline. Mixins are added to the profile,
source and merge admins in profiles/admin.py."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.pii import can_view_pii, mask_traits, mask_value
from profiles.ingest.collect import rejected_message_retry
from profiles.models import Event, MergeConflict, PendingMessage, RejectedMessage
from profiles.resolution.merges import (
    MergeRefused,
    merge_conflict_approve,
    merge_conflict_reject,
    profile_merge_undo,
    profiles_merge_manual,
)
from profiles.selectors import profile_resolve

SOURCE_DAYS = 14
TIMELINE_PAGE_SIZE = 50


def _run_each(modeladmin, request, items, service, done: str) -> None:
    """Call a service per selected row; report successes and refusals separately."""
    succeeded = 0
    for item in items:
        try:
            service(item)
        except MergeRefused as exc:
            modeladmin.message_user(request, f"{item}: {exc}", messages.ERROR)
        else:
            succeeded += 1
    if succeeded:
        modeladmin.message_user(request, f"{succeeded} {done}.", messages.SUCCESS)


@admin.register(RejectedMessage)
class RejectedMessageAdmin(ReadableModelAdmin):
    list_display = ["id", "received_at", "source", "type", "message_id", "short_reason", "status"]
    list_filter = ["status", "type", "source"]
    search_fields = ["=message_id"]
    list_select_related = ["source"]
    autocomplete_fields = ["source"]
    date_hierarchy = "received_at"
    readonly_fields = [
        "source",
        "message_id",
        "type",
        "reason",
        "status",
        "received_at",
        "retried_at",
    ]
    fields = [*readonly_fields[:4], "payload", *readonly_fields[4:]]
    actions = ["retry"]

    # The payload is personal data: shown masked (and not editable) without the PII permission.
    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self.may_view_pii(request):
            return fields
        return ["masked_payload" if name == "payload" else name for name in fields]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly if self.may_view_pii(request) else [*readonly, "masked_payload"]

    @admin.display(description="payload")
    def masked_payload(self, rejected):
        return format_html("<code>{}</code>", mask_traits(rejected.payload))

    def has_add_permission(self, request):
        return False

    @admin.display(description="reason")
    def short_reason(self, rejected):
        return rejected.reason if len(rejected.reason) <= 90 else rejected.reason[:87] + "..."

    @admin.action(
        permissions=["change"],
        description="Retry the selected messages (after fixing them or their source)",
    )
    def retry(self, request, queryset):
        accepted = 0
        for rejected in queryset.filter(status=RejectedMessage.Status.REJECTED):
            reason = rejected_message_retry(rejected=rejected)
            if reason:
                self.message_user(request, f"{rejected.pk} still refused: {reason}", messages.ERROR)
            else:
                accepted += 1
        if accepted:
            self.message_user(request, f"{accepted} messages accepted.", messages.SUCCESS)


@admin.register(MergeConflict)
class MergeConflictAdmin(ReadableModelAdmin):
    list_display = [
        "id",
        "created_at",
        "profile",
        "other_profile",
        "identifier_kind",
        "identifier_value",
        "reason",
        "status",
        "decided_by",
    ]
    list_filter = ["status", "identifier_kind"]
    search_fields = ["=profile__id", "=other_profile__id", "=identifier_value"]
    list_select_related = ["profile", "other_profile", "decided_by"]
    raw_id_fields = ["profile", "other_profile", "merge"]
    readonly_fields = [
        "profile",
        "other_profile",
        "identifier_kind",
        "identifier_value",
        "reason",
        "message_id",
        "status",
        "merge",
        "decided_by",
        "decided_at",
        "created_at",
    ]
    pii_fields = ("identifier_value",)
    actions = ["approve", "reject"]

    def has_add_permission(self, request):
        return False

    @admin.action(permissions=["change"], description="Approve: merge the two profiles")
    def approve(self, request, queryset):
        _run_each(
            self,
            request,
            queryset,
            lambda c: merge_conflict_approve(conflict=c, decided_by=request.user),
            "conflicts merged",
        )

    @admin.action(permissions=["change"], description="Reject: keep the profiles apart")
    def reject(self, request, queryset):
        _run_each(
            self,
            request,
            queryset,
            lambda c: merge_conflict_reject(conflict=c, decided_by=request.user),
            "conflicts kept apart",
        )


class ProfileMergeUndoAdminMixin:
    """Added to the merge audit admin: split a merge again."""

    actions = ["undo_merges"]

    @admin.action(
        permissions=["change"], description="Undo the selected merges (split the profiles again)"
    )
    def undo_merges(self, request, queryset):
        _run_each(
            self,
            request,
            queryset.order_by("-created_at"),  # the latest first: a later merge blocks an earlier
            lambda m: profile_merge_undo(merge=m, undone_by=request.user),
            "merges undone",
        )


class SourceIngestAdminMixin:
    """Added to the source admin: what the source sent lately, and what was refused."""

    ingest_fields = ["received_per_day", "recent_rejections"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return [*fields, *self.ingest_fields] if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.ingest_fields]

    @admin.display(description=f"events received per day (last {SOURCE_DAYS} days)")
    def received_per_day(self, source):
        since = timezone.now() - timedelta(days=SOURCE_DAYS)
        # The timestamp bound lets the BRIN index on timestamp narrow the scan; events that
        # happened more than a day before they arrived are rare and left out.
        days = (
            Event.objects.filter(
                source=source, received_at__gte=since, timestamp__gte=since - timedelta(days=1)
            )
            .annotate(day=TruncDate("received_at"))
            .values("day")
            .annotate(count=Count("id"))
            .order_by("-day")
        )
        waiting = PendingMessage.objects.filter(source=source).count()
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td></tr>", ((d["day"], d["count"]) for d in days)
        )
        return format_html(
            "<table><thead><tr><th>day</th><th>events</th></tr></thead><tbody>{}</tbody></table>"
            "<p>{} messages waiting to be processed.</p>",
            rows or mark_safe("<tr><td colspan=2>none</td></tr>"),  # noqa: S308
            waiting,
        )

    @admin.display(description="rejected messages")
    def recent_rejections(self, source):
        rejected = RejectedMessage.objects.filter(
            source=source, status=RejectedMessage.Status.REJECTED
        )
        latest = list(rejected.order_by("-received_at")[:10])
        link = (
            reverse("admin:profiles_rejectedmessage_changelist") + f"?source__id__exact={source.pk}"
        )
        rows = format_html_join(
            "",
            "<li>{} <code>{}</code> {}</li>",
            ((r.received_at.strftime("%Y-%m-%d %H:%M"), r.type, r.reason[:120]) for r in latest),
        )
        return format_html(
            '<ul>{}</ul><a href="{}">All rejected messages of this source</a>',
            rows or mark_safe("<li>none</li>"),  # noqa: S308
            link,
        )


class TimelineFilterForm(forms.Form):
    type = forms.ChoiceField(choices=[("", "all types"), *Event.Type.choices], required=False)
    name = forms.CharField(required=False, max_length=255, help_text="Exact event or page name.")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, events):
        data = self.cleaned_data
        if data.get("type"):
            events = events.filter(type=data["type"])
        if data.get("name"):
            events = events.filter(name=data["name"])
        tz = timezone.get_current_timezone()
        if data.get("since"):
            events = events.filter(timestamp__gte=datetime.combine(data["since"], time.min, tz))
        if data.get("until"):
            until = datetime.combine(data["until"], time.min, tz) + timedelta(days=1)
            events = events.filter(timestamp__lt=until)
        return events


class ProfileIngestAdminMixin:
    """Added to the profile admin: manual merge and the paginated, filterable event timeline."""

    actions = ["merge_selected"]
    ingest_fields = ["event_timeline"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return [*fields, *self.ingest_fields] if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.ingest_fields]

    @admin.display(description="timeline")
    def event_timeline(self, profile):
        url = reverse("admin:profiles_profile_timeline", args=[profile.pk])
        return format_html('<a href="{}">All events, filterable by type, name and date</a>', url)

    @admin.action(
        permissions=["change"], description="Merge the selected profiles (into the oldest)"
    )
    def merge_selected(self, request, queryset):
        try:
            merges = profiles_merge_manual(
                profile_ids=list(queryset.values_list("pk", flat=True)), merged_by=request.user
            )
        except MergeRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        survivor = merges[0].survivor_id
        self.message_user(
            request, f"{len(merges)} profiles merged into profile {survivor}.", messages.SUCCESS
        )

    def get_urls(self):
        timeline = path(
            "<int:profile_id>/timeline/",
            self.admin_site.admin_view(self.timeline_view),
            name="profiles_profile_timeline",
        )
        return [timeline, *super().get_urls()]

    def timeline_view(self, request, profile_id: int):
        profile = profile_resolve(profile_id)
        if profile is None or not self.has_view_permission(request, profile):
            raise Http404("No such profile.")
        if profile.pk != profile_id:
            url = reverse("admin:profiles_profile_timeline", args=[profile.pk])
            return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}")
        form = TimelineFilterForm(request.GET or None)
        events = profile.events.select_related("source").order_by("-timestamp", "-id")
        if form.is_valid():
            events = form.filter(events)
        page = Paginator(events, TIMELINE_PAGE_SIZE).get_page(request.GET.get("page"))
        pii = can_view_pii(request.user)
        for event in page.object_list:
            event.shown_properties = event.properties if pii else mask_traits(event.properties)
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Timeline of {profile if not pii else profile.display_name}",
            "profile": profile,
            "identities": [
                (
                    i.kind,
                    i.value if pii or not i.is_personal else mask_value(i.value),
                )
                for i in profile.identities.all()[:50]
            ],
            "form": form,
            "page": page,
            "filter_query": query.urlencode(),
        }
        return TemplateResponse(request, "admin/profiles/profile/timeline.html", context)
