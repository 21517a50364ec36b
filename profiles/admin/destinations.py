"""Destinations (what each receives, its signing secret shown once, pause and resume, its
deliveries counted and its latest attempts) and the deliveries themselves: the outbox, with
the dead letters to retry one by one or in bulk.

Permissions: a destination's own (``profiles.*_destination``: marketers and data engineers
edit them); the deliveries follow them (seeing a destination lets one see its deliveries,
changing it lets one retry them), so no role needs a separate grant. Event payloads are masked
for roles without access to personal data."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.charts import stacked_bar_chart
from cdphub.delivery import (
    deliveries_retry,
    deliveries_schedule,
    delivery_counts,
    delivery_history,
)
from cdphub.models import Delivery, DeliveryAttempt
from cdphub.pii import mask_text
from profiles.destinations.kinds import config_shown, kind_choices
from profiles.destinations.services import (
    EDITABLE,
    destination_create,
    destination_delete,
    destination_pause,
    destination_resume,
    destination_update,
    destination_validate,
    receiving_of,
)
from profiles.destinations.stream import destination_replay
from profiles.models import Destination, Event

RECENT_ATTEMPTS = 20


class ReplayForm(forms.Form):
    since = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="The first event time sent again.",
    )
    until = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Events before this time are sent again (at most 100,000 per replay).",
    )


class DestinationForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=kind_choices)
    event_types = forms.MultipleChoiceField(
        choices=Event.Type.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type.",
    )

    class Meta:
        model = Destination
        fields = [
            "name",
            "kind",
            "receiving",
            "segment",
            "config",
            "source",
            "event_types",
            "event_names",
            "profile_rule",
            "purpose_code",
            "batch_size",
            "batch_interval_seconds",
        ]
        help_texts = {
            "config": 'A webhook: {"url": "https://hooks.example.com/cdp", "headers": '
            '{"Authorization": "Bearer ..."}}. A Segment-compatible forward: {"url": '
            '"https://api.segment.io", "write_key": "..."}. A Meta Custom Audience (with a '
            'segment): {"audience_id": "2385...", "access_token": "..."}. A Google Customer '
            'Match list (with a segment): {"customer_id": "123-456-7890", "user_list_id": '
            '"...", "developer_token": "...", "access_token": "..."}. A Mailchimp list '
            'tag (with a segment): {"api_key": "...-us21", "list_id": "9e67587f52", "tag_id": '
            '"4321"}. A warehouse: {"database_url": "postgres://user:password@host/db", '
            '"schema": "cdphub"}. The URL may not reach an internal address.',
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "receiving" in self.fields:
            # Left out: events, or a segment's members when a segment is chosen.
            self.fields["receiving"].required = False
        if self.instance.pk:
            self.fields["kind"].disabled = True
            for name in ("receiving", "segment"):
                if name in self.fields:  # not for those who may only look
                    self.fields[name].disabled = True
        elif not self.initial.get("config"):
            self.initial["config"] = {"url": "", "headers": {}}

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        candidate = Destination(
            pk=self.instance.pk,
            kind=data.get("kind") or self.instance.kind,
            segment=self.instance.segment if self.instance.pk else data.get("segment"),
            receiving=self.instance.receiving
            if self.instance.pk
            else receiving_of(data.get("segment"), data.get("receiving")),
            **{name: data.get(name) for name in EDITABLE if name in data},
        )
        try:
            destination_validate(candidate)
        except ValidationError as error:
            raise ValidationError(
                {k: v for k, v in error.message_dict.items() if k in self.fields} or error.messages
            ) from error
        data["config"] = candidate.config
        return data


def hourly_median(hours: list[dict], name: str) -> int:
    values = sorted(hour[name] or 0 for hour in hours)
    return values[len(values) // 2]


def duration(ms: int) -> str:
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.0f} s"


@admin.register(Destination)
class DestinationAdmin(ReadableModelAdmin):
    form = DestinationForm
    list_display = [
        "name",
        "kind",
        "status",
        "purpose_code",
        "receives",
        "deliveries",
        "paused_reason",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["segment", "source"]
    search_fields = ["name"]
    readonly_fields = [
        "secret_prefix",
        "status",
        "paused_reason",
        "paused_at",
        "consecutive_failures",
        "audience_key",
        "sync_loaded_at",
        "sync_waiting_reason",
        "created_at",
        "updated_at",
    ]
    activity_fields = ["deliveries", "history", "replay_link", "recent_attempts"]
    actions = ["pause", "resume", "retry_dead_letters"]

    def get_fields(self, request, obj=None):
        fields = list(self.form.Meta.fields)
        if obj is None:
            return fields
        if not self.has_change_permission(request, obj):
            # Seen, not changed: the receiver's credentials in the config are masked.
            fields = ["config_shown" if name == "config" else name for name in fields]
        return [*fields, *self.readonly_fields, *self.activity_fields]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        shown = [] if self.has_change_permission(request, obj) else ["config_shown"]
        return [*self.readonly_fields, *self.activity_fields, *shown]

    @admin.display(description="config")
    def config_shown(self, destination):
        return format_html("<code>{}</code>", json.dumps(config_shown(destination, False)))

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in form.changed_data if name in EDITABLE}
            if changes:
                destination_update(destination=obj, actor=request.user, **changes)
            return
        destination, secret = destination_create(
            kind=data["kind"],
            segment=data.get("segment"),
            receiving=data.get("receiving") or "",
            actor=request.user,
            **{name: data[name] for name in EDITABLE},
        )
        obj.pk = destination.pk
        obj.secret_prefix = destination.secret_prefix
        if secret:
            self.message_user(
                request,
                f"Signing secret for {destination.name}: {secret} (copy it to the receiver "
                "now: it is shown only once). Receivers check the Cdphub-Signature header with "
                "it.",
                messages.WARNING,
            )

    def delete_model(self, request, obj):
        destination_delete(destination=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for destination in queryset:
            destination_delete(destination=destination, actor=request.user)

    @admin.action(permissions=["change"], description="Pause (what they receive waits)")
    def pause(self, request, queryset):
        for destination in queryset.filter(status=Destination.Status.ACTIVE):
            destination_pause(
                destination=destination, reason=f"paused by {request.user}", actor=request.user
            )
        self.message_user(request, "Paused: events wait for their resume.")

    @admin.action(permissions=["change"], description="Resume (send what waited)")
    def resume(self, request, queryset):
        for destination in queryset.filter(status=Destination.Status.PAUSED):
            destination_resume(destination=destination, actor=request.user)
        transaction.on_commit(deliveries_schedule)
        self.message_user(request, "Resumed: what waited is being sent.")

    @admin.action(permissions=["change"], description="Retry their dead letters")
    def retry_dead_letters(self, request, queryset):
        retried = deliveries_retry(
            deliveries=Delivery.objects.filter(destination__in=queryset), actor=request.user
        )
        transaction.on_commit(deliveries_schedule)
        self.message_user(request, f"{retried} dead letters queued again.")

    def get_urls(self):
        replay = self.admin_site.admin_view(self.replay_view)
        return [
            path("<int:object_id>/replay/", replay, name="profiles_destination_replay"),
            *super().get_urls(),
        ]

    def replay_view(self, request, object_id: int):
        """Send the events of a time range again: a backfill of a new tool, or an outage."""
        destination = get_object_or_404(Destination, pk=object_id)
        if not self.has_change_permission(request, destination):
            raise PermissionDenied
        form = ReplayForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                queued = destination_replay(
                    destination=destination, **form.cleaned_data, actor=request.user
                )
            except ValidationError as error:
                for field, problems in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, problems)
            else:
                transaction.on_commit(deliveries_schedule)
                self.message_user(request, f"{queued} events queued for {destination}.")
                return redirect("admin:profiles_destination_change", destination.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": destination,
            "form": form,
            "title": f"Replay events to {destination}",
        }
        return TemplateResponse(request, "admin/profiles/destination/replay.html", context)

    @admin.display(description="replay")
    def replay_link(self, destination):
        return format_html(
            '<a href="{}">Send the events of a time range again</a>',
            reverse("admin:profiles_destination_replay", args=[destination.pk]),
        )

    @admin.display(description="receives")
    def receives(self, destination):
        waiting = f" ({destination.sync_waiting_reason})" if destination.sync_waiting_reason else ""
        if destination.segment_id:
            return f"Audience sync of {destination.segment}{waiting}"
        if destination.receiving == Destination.Receiving.AUDIENCE:
            if not destination.audience_key:
                return "A DMP audience: none linked yet (link one on the audience's page)"
            return f"Audience sync of the DMP audience {destination.audience_key}{waiting}"
        return f"Events of {destination.source or 'every source'}"

    @admin.display(description="deliveries")
    def deliveries(self, destination):
        counts = delivery_counts(destination)
        link = (
            reverse("admin:cdphub_delivery_changelist")
            + f"?destination__id__exact={destination.pk}"
        )
        return format_html(
            '<a href="{}">{} delivered, {} waiting, {} retrying, {} dead, {} skipped</a>',
            link,
            counts["delivered"],
            counts["pending"] - counts["retrying"],
            counts["retrying"],
            counts["dead"],
            counts["skipped"],
        )

    @admin.display(description="last 48 hours")
    def history(self, destination):
        hours = delivery_history(destination, hours=48)
        chart = stacked_bar_chart(
            [
                (
                    hour["hour"].strftime("%d %H:00"),
                    {
                        "delivered": hour["delivered"],
                        "failed, retried": hour["retried"],
                        "refused (dead)": hour["refused"],
                    },
                )
                for hour in hours
            ],
            title="Events sent per hour: delivered, failed and retried, refused",
        )
        answered = [hour for hour in hours[-24:] if hour["latency_p50_ms"] is not None]
        if not answered:
            return format_html("{}<p>No request in the last 24 hours.</p>", chart)
        return format_html(
            "{}<p>The receiver answered in {} ms (median of the hourly medians), at worst "
            "{} ms (the slowest hour's 99th percentile), over the last 24 hours. Events "
            "reached it {} after they were processed (median of the hourly medians), at worst "
            "{}.</p>",
            chart,
            hourly_median(answered, "latency_p50_ms"),
            max(hour["latency_p99_ms"] for hour in answered),
            duration(hourly_median(answered, "waited_p50_ms")),
            duration(max(hour["waited_p99_ms"] or 0 for hour in answered)),
        )

    @admin.display(description=f"latest {RECENT_ATTEMPTS} attempts")
    def recent_attempts(self, destination):
        attempts = DeliveryAttempt.objects.filter(destination=destination)[:RECENT_ATTEMPTS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            (
                (
                    a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    a.get_outcome_display(),
                    a.status_code or "-",
                    a.items,
                    a.latency_ms,
                    a.error,
                )
                for a in attempts
            ),
        )
        return format_html(
            "<table><thead><tr><th>when</th><th>outcome</th><th>status</th><th>events</th>"
            "<th>latency</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows or mark_safe("<tr><td colspan=6>none yet</td></tr>"),  # noqa: S308
        )


@admin.register(Delivery)
class DeliveryAdmin(ReadableModelAdmin):
    """The outbox: read only; dead letters are retried with the action."""

    list_display = [
        "id",
        "destination",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "destination"]
    list_select_related = ["destination"]
    fields = [
        "destination",
        "profile_id",
        "status",
        "batch_key",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "response",
        "payload",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields
    pii_json_fields = ("payload",)
    pii_displays = ("response",)
    actions = ["retry"]

    @admin.display(description="response")
    def response(self, delivery, pii: bool):
        return delivery.response_body if pii else mask_text(delivery.response_body)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("profiles.view_destination")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_retry_permission(self, request):
        return request.user.has_perm("profiles.change_destination")

    @admin.action(permissions=["retry"], description="Retry (dead letters only)")
    def retry(self, request, queryset):
        retried = deliveries_retry(deliveries=queryset, actor=request.user)
        transaction.on_commit(deliveries_schedule)
        self.message_user(request, f"{retried} dead letters queued again.")
