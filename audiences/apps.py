from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences (DMP)"

    def ready(self) -> None:
        # Anonymous browsers and devices in collected messages become visitors.
        from audiences.ingest import visitors_from_messages
        from profiles import processing_hooks

        processing_hooks.register(visitors_from_messages)
