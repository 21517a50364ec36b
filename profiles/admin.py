from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html, format_html_join

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.pii import can_view_pii, mask_traits, mask_value
from profiles.ingest_admin import (
    ProfileIngestAdminMixin,
    ProfileMergeUndoAdminMixin,
    SourceIngestAdminMixin,
)
from profiles.models import Event, Identity, Profile, ProfileMerge, Segment, Source
from profiles.normalize import InvalidIdentifier, normalize_email, normalize_phone
from profiles.services import source_create


@admin.register(Source)
class SourceAdmin(SourceIngestAdminMixin, ReadableModelAdmin):
    list_display = ["name", "kind", "write_key_prefix", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["write_key_prefix", "created_at", "updated_at"]
    fields = ["name", "kind", "is_active", "write_key_prefix", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        source, write_key = source_create(name=obj.name, kind=obj.kind)
        obj.pk = source.pk
        obj.write_key_hash = source.write_key_hash
        obj.write_key_prefix = source.write_key_prefix
        self.message_user(
            request,
            f"Write key for {source.name}: {write_key} (copy it now: it is shown only once).",
            messages.WARNING,
        )


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ["kind", "shown_value", "source", "first_seen_at", "last_seen_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source")

    @admin.display(description="value")
    def shown_value(self, identity):
        if identity.kind in Identity.PII_KINDS and not can_view_pii(self.request_user):
            return mask_value(identity.value)
        return identity.value

    def get_formset(self, request, obj=None, **kwargs):
        self.request_user = request.user
        return super().get_formset(request, obj, **kwargs)


@admin.register(Profile)
class ProfileAdmin(ProfileIngestAdminMixin, ReadableModelAdmin):
    list_display = ["id", "name", "email", "last_seen_at", "first_seen_at", "merged_into"]
    list_filter = [("merged_into", admin.EmptyFieldListFilter)]
    search_fields = ["id"]
    search_help_text = "Search by e-mail, phone, user id, anonymous id or profile id."
    list_select_related = ["merged_into"]
    raw_id_fields = ["merged_into"]
    readonly_fields = [
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "computed_traits",
        "latest_events",
    ]
    fields = [
        "traits",
        "computed_traits",
        "first_seen_at",
        "last_seen_at",
        "merged_into",
        "created_at",
        "updated_at",
        "latest_events",
    ]
    pii_json_fields = ("traits",)
    inlines = [IdentityInline]

    @admin.display(description="name")
    def name(self, profile):
        traits = profile.traits or {}
        name = traits.get("name") or " ".join(
            str(part) for part in (traits.get("firstName"), traits.get("lastName")) if part
        )
        return name if self._pii_allowed else mask_value(name)

    @admin.display(description="e-mail")
    def email(self, profile):
        value = (profile.traits or {}).get("email", "")
        return value if self._pii_allowed else mask_value(value)

    def changelist_view(self, request, extra_context=None):
        self._pii_allowed = self.may_view_pii(request)
        return super().changelist_view(request, extra_context)

    def get_search_results(self, request, queryset, search_term):
        """Exact identifier look-ups through the identity index, never a scan of traits."""
        term = search_term.strip()
        if not term:
            return queryset, False
        values = {term}
        for normalizer in (normalize_email, normalize_phone):
            try:
                values.add(normalizer(term))
            except InvalidIdentifier:
                pass
        matching = Q(identities__value__in=values)
        if term.isdigit():
            matching |= Q(pk=int(term))
        return queryset.filter(matching).distinct(), True

    @admin.display(description="latest events")
    def latest_events(self, profile):
        events = profile.events.select_related("source").order_by("-timestamp")[:20]
        pii = self._change_pii_allowed
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (
                    e.timestamp.strftime("%Y-%m-%d %H:%M"),
                    e.type,
                    e.name,
                    e.source.name,
                    e.properties if pii else mask_traits(e.properties),
                )
                for e in events
            ),
        )
        if not rows:
            return "No events yet."
        return format_html(
            "<table><thead><tr><th>when</th><th>type</th><th>name</th><th>source</th>"
            "<th>properties</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        self._change_pii_allowed = self.may_view_pii(request)
        return super().changeform_view(request, object_id, form_url, extra_context)


@admin.register(Identity)
class IdentityAdmin(ReadableModelAdmin):
    list_display = ["id", "kind", "shown_value", "profile", "source", "first_seen_at", "last_seen_at"]
    list_filter = ["kind", "source"]
    search_fields = ["=value"]
    list_select_related = ["source"]
    raw_id_fields = ["profile"]
    autocomplete_fields = ["source"]
    readonly_fields = ["created_at"]

    @admin.display(description="value", ordering="value")
    def shown_value(self, identity):
        if identity.kind in Identity.PII_KINDS and not self._pii_allowed:
            return mask_value(identity.value)
        return identity.value

    def changelist_view(self, request, extra_context=None):
        self._pii_allowed = self.may_view_pii(request)
        return super().changelist_view(request, extra_context)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        values = {term}
        for normalizer in (normalize_email, normalize_phone):
            try:
                values.add(normalizer(term))
            except InvalidIdentifier:
                pass
        return queryset.filter(value__in=values), False

    def get_fields(self, request, obj=None):
        fields = ["profile", "kind", "value", "source", "first_seen_at", "last_seen_at", "created_at"]
        if obj is not None and obj.kind in Identity.PII_KINDS and not self.may_view_pii(request):
            fields[fields.index("value")] = "shown_value"
        return fields

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if obj is not None and obj.kind in Identity.PII_KINDS and not self.may_view_pii(request):
            self._pii_allowed = False
            return [*readonly, "shown_value"]
        return readonly


@admin.register(Event)
class EventAdmin(ReadableModelAdmin):
    list_display = ["id", "type", "name", "profile", "source", "timestamp", "received_at"]
    list_filter = ["type", "source"]
    search_fields = ["=message_id", "=name"]
    list_select_related = ["source"]
    raw_id_fields = ["profile"]
    autocomplete_fields = ["source"]
    pii_json_fields = ("properties", "context")

    def has_add_permission(self, request):
        return False  # events arrive through the collection API


@admin.register(ProfileMerge)
class ProfileMergeAdmin(ProfileMergeUndoAdminMixin, ReadableModelAdmin):
    list_display = ["id", "merged", "survivor", "reason", "merged_by", "created_at", "undone_at"]
    list_select_related = ["merged_by"]
    raw_id_fields = ["merged", "survivor"]
    readonly_fields = ["survivor", "merged", "reason", "moved", "merged_by", "created_at", "undone_at"]
    search_fields = ["=survivor__id", "=merged__id"]

    def has_add_permission(self, request):
        return False


@admin.register(Segment)
class SegmentAdmin(ReadableModelAdmin):
    list_display = ["name", "kind", "size", "refreshed_at", "created_by", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    list_select_related = ["created_by"]
    readonly_fields = ["size", "refreshed_at", "created_by", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
