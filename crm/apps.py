from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        # Group calls make accounts: the company with the group id, and the person's link.
        from crm.accounts import accounts_from_group_calls
        from profiles.ingest import hooks

        hooks.register(accounts_from_group_calls)
