from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences (DMP)"

    def ready(self) -> None:
        # Anonymous browsers and devices in collected messages become visitors.
        from audiences.ingest import visitor_links_follow_consent, visitors_from_messages
        from consent import changes
        from profiles.ingest import hooks

        hooks.register(visitors_from_messages)
        # Visitor links follow the person's advertising/personalisation consent at once.
        changes.register(visitor_links_follow_consent)

        # The ad platforms' destination kinds (a Meta Custom Audience kept in sync).
        import audiences.destinations  # noqa: F401

        # Audience syncs of visitors: the audience's side, and their consent at once.
        from audiences.syncs import visitors_consent_follow

        changes.register(visitors_consent_follow)
