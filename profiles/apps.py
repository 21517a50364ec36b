from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Customer profiles (CDP)"

    def ready(self) -> None:
        # Each app's merges.py registers the rows that follow a profile merge, its panels.py
        # what it shows on the profile page, its leaves.py the rule conditions on its data.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("merges")
        autodiscover_modules("panels")
        autodiscover_modules("leaves")

        # Event streams: each processed message a destination receives enters the outbox in
        # the processing transaction.
        from profiles.destinations.stream import events_to_outbox
        from profiles.ingest import hooks

        hooks.register(events_to_outbox)

        # Audience syncs: a segment's entries and exits, and consent changes of its members,
        # reach the destinations that sync it.
        from consent import changes as consent_changes
        from profiles.destinations.audience import consent_follow, segment_members_changed
        from profiles.segments import changes as segment_changes

        segment_changes.register(segment_members_changed)
        consent_changes.register(consent_follow)
