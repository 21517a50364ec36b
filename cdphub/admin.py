from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User

from cdphub.admin_mixins import ReadableModelAdmin, SavedViewsMixin, ViewOnlyAdminMixin
from cdphub.models import ApiKey, AuditEntry

# Staff accounts and role groups are Django's own pages, with saved views like every list.
for model in (User, Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class StaffUserAdmin(SavedViewsMixin, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class RoleGroupAdmin(SavedViewsMixin, auth_admin.GroupAdmin):
    pass


@admin.register(AuditEntry)
class AuditEntryAdmin(ViewOnlyAdminMixin, ReadableModelAdmin):
    """Who did what to which record, written by the services with each change."""

    list_display = ["created_at", "actor_label", "action", "object_type", "object_id", "note"]
    list_filter = ["action", "object_type"]
    search_fields = ["=object_id", "actor_label"]
    date_hierarchy = "created_at"


@admin.register(ApiKey)
class ApiKeyAdmin(ReadableModelAdmin):
    list_display = [
        "name",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    list_select_related = ["created_by"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        # The key must be printed once to whoever creates it: manage.py create_api_key does that.
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked.")
