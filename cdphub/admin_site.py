from __future__ import annotations

from django.contrib import admin

# The order a marketer works in: people first, then sales, advertising, privacy, access.
APP_ORDER = ["profiles", "crm", "audiences", "consent", "cdphub", "auth"]


class CdphubAdminSite(admin.AdminSite):
    site_header = "cdphub"
    site_title = "cdphub"
    index_title = "Marketing data hub"

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        rank = {label: position for position, label in enumerate(APP_ORDER)}
        return sorted(app_list, key=lambda app: rank.get(app["app_label"], len(rank)))
