from __future__ import annotations

from django.contrib import admin

from audiences.models import Audience, Category, DataProvider, Visitor, VisitorTraitHit
from cdphub.admin_mixins import ReadableModelAdmin


class TraitHitInline(admin.TabularInline):
    model = VisitorTraitHit
    extra = 0
    fields = ["category", "provider", "observed_at", "expires_at"]
    readonly_fields = fields
    can_delete = False
    ordering = ["-observed_at"]

    def has_add_permission(self, request, obj=None):
        return False  # hits arrive through provider files and collection, with their expiry

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("category", "provider")


@admin.register(Visitor)
class VisitorAdmin(ReadableModelAdmin):
    list_display = [
        "key",
        "key_kind",
        "country",
        "device_type",
        "browser",
        "profile",
        "last_seen_at",
        "expires_at",
    ]
    list_filter = ["key_kind", "device_type", "country", ("profile", admin.EmptyFieldListFilter)]
    search_fields = ["=key"]
    search_help_text = "Exact cookie or device id."
    list_select_related = ["profile"]
    raw_id_fields = ["profile"]
    readonly_fields = ["created_at"]
    inlines = [TraitHitInline]


@admin.register(DataProvider)
class DataProviderAdmin(ReadableModelAdmin):
    list_display = ["name", "party", "retention_days", "is_active", "created_at"]
    list_filter = ["party", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]


@admin.register(Category)
class CategoryAdmin(ReadableModelAdmin):
    list_display = ["code", "name", "kind", "tier", "parent"]
    list_filter = ["kind", "tier"]
    search_fields = ["code", "name"]
    list_select_related = ["parent"]
    autocomplete_fields = ["parent"]


@admin.register(VisitorTraitHit)
class VisitorTraitHitAdmin(ReadableModelAdmin):
    list_display = ["id", "visitor", "category", "provider", "observed_at", "expires_at"]
    list_filter = ["provider", "category__kind"]
    search_fields = ["=visitor__key", "=category__code"]
    search_help_text = "Exact cookie/device id or category code."
    list_select_related = ["visitor", "category", "provider"]
    raw_id_fields = ["visitor"]
    autocomplete_fields = ["category", "provider"]


@admin.register(Audience)
class AudienceAdmin(ReadableModelAdmin):
    list_display = [
        "name",
        "kind",
        "size",
        "seed_segment",
        "reach_percent",
        "refreshed_at",
        "created_by",
    ]
    list_filter = ["kind"]
    search_fields = ["name"]
    list_select_related = ["seed_segment", "created_by"]
    autocomplete_fields = ["seed_segment"]
    readonly_fields = ["size", "refreshed_at", "created_by", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
