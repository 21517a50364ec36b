"""Sales teams: who is in which team, who leads it, and whose records the members see."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from cdphub.admin_mixins import ReadableModelAdmin
from crm.models import SalesTeam


@admin.register(SalesTeam)
class SalesTeamAdmin(ReadableModelAdmin):
    """Editable with ``crm.change_salesteam`` (superusers and the Sales manager role); the
    Sales role only reads it, so no one widens their own view of the CRM."""

    list_display = ["name", "visibility", "manager", "member_count", "updated_at"]
    list_filter = ["visibility"]
    search_fields = ["name", "manager__username", "members__username"]
    list_select_related = ["manager"]
    filter_horizontal = ["members"]
    fields = ["name", "visibility", "manager", "members", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_total=Count("members"))

    @admin.display(description="members", ordering="member_total")
    def member_count(self, team):
        return team.member_total
