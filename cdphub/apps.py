from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CdphubConfig(AppConfig):
    default = True
    name = "cdphub"
    verbose_name = "Access"


class CdphubAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "cdphub.admin_site.CdphubAdminSite"
