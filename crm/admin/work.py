"""Activities, tickets and tasks."""

from __future__ import annotations

from django.contrib import admin

from cdphub.admin_mixins import ReadableModelAdmin
from crm.admin.actions import (
    OwnerActionForm,
    assign_owner,
)
from crm.admin.visibility import (
    SafeExportMixin,
    VisibleRecordsAdminMixin,
)
from crm.models import (
    Activity,
    Task,
    Ticket,
)
from crm.resources import ActivityResource

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
