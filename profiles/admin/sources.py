"""Sources (what each sent lately; the write key shown once) and the messages collection
rejected, with their retry."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.pii import mask_traits
from profiles.ingest.collect import rejected_message_retry
from profiles.models import (
    Event,
    PendingMessage,
    RateLimitedDay,
    RejectedMessage,
    Source,
)
from profiles.services import source_create, source_rotate_write_key

SOURCE_DAYS = 14
TIMELINE_PAGE_SIZE = 50


@admin.register(Source)
class SourceAdmin(ReadableModelAdmin):
    list_display = ["name", "kind", "write_key_prefix", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["write_key_prefix", "created_at", "updated_at"]
    fields = [
        "name",
        "kind",
        "is_active",
        "allowed_origins",
        "rate_limit_per_second",
        "rate_limit_burst",
        "identifier_limit_per_minute",
        "write_key_prefix",
        "created_at",
        "updated_at",
    ]
    actions = ["rotate_write_key"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        source, write_key = source_create(
            name=obj.name,
            kind=obj.kind,
            allowed_origins=obj.allowed_origins,
            rate_limit_per_second=obj.rate_limit_per_second,
            rate_limit_burst=obj.rate_limit_burst,
            identifier_limit_per_minute=obj.identifier_limit_per_minute,
            actor=request.user,
        )
        obj.pk = source.pk
        obj.write_key_hash = source.write_key_hash
        obj.write_key_prefix = source.write_key_prefix
        self.message_user(
            request,
            f"Write key for {source.name}: {write_key} (copy it now: it is shown only once).",
            messages.WARNING,
        )

    @admin.action(
        permissions=["change"],
        description="Rotate the write key (the old key stops working; the new one is shown once)",
    )
    def rotate_write_key(self, request, queryset):
        for source in queryset.order_by("name"):
            write_key = source_rotate_write_key(source=source, actor=request.user)
            self.message_user(
                request,
                f"New write key for {source.name}: {write_key} (copy it now: it is shown only "
                "once; the old key is refused within a second).",
                messages.WARNING,
            )

    activity_fields = ["received_per_day", "rate_limited_per_day", "recent_rejections"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return [*fields, *self.activity_fields] if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.activity_fields]

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

    @admin.display(description=f"messages refused for rate limits (last {SOURCE_DAYS} days)")
    def rate_limited_per_day(self, source):
        days = RateLimitedDay.objects.filter(
            source=source, day__gte=timezone.localdate() - timedelta(days=SOURCE_DAYS)
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((d.day, d.source_limited, d.identifier_limited) for d in days),
        )
        return format_html(
            "<table><thead><tr><th>day</th><th>source over its rate</th>"
            "<th>one sender over its limit</th></tr></thead><tbody>{}</tbody></table>",
            rows or mark_safe("<tr><td colspan=3>none</td></tr>"),  # noqa: S308
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
