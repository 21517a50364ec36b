from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CdphubConfig(AppConfig):
    default = True
    name = "cdphub"
    verbose_name = "Access"

    def ready(self) -> None:
        from cdphub.logs import record_factory_install

        record_factory_install()  # every log line carries its request id


class CdphubAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "cdphub.admin_site.CdphubAdminSite"
