"""Identity resolution under review: merges (undo) and the conflict queue (approve / reject)."""

from __future__ import annotations

from django.contrib import admin, messages

from cdphub.admin_mixins import ReadableModelAdmin
from profiles.models import (
    MergeConflict,
    ProfileMerge,
)
from profiles.resolution.merges import (
    MergeRefused,
    merge_conflict_approve,
    merge_conflict_reject,
    profile_merge_undo,
)

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


@admin.register(ProfileMerge)
class ProfileMergeAdmin(ReadableModelAdmin):
    list_display = ["id", "merged", "survivor", "reason", "merged_by", "created_at", "undone_at"]
    list_select_related = ["merged_by", "merged", "survivor"]
    raw_id_fields = ["merged", "survivor"]
    readonly_fields = [
        "survivor",
        "merged",
        "reason",
        "moved",
        "merged_by",
        "created_at",
        "undone_at",
    ]
    search_fields = ["=survivor__id", "=merged__id"]

    def has_add_permission(self, request):
        return False

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
