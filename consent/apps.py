from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and privacy"

    def ready(self) -> None:
        # Each app's privacy.py registers the personal data it holds (see consent.registry).
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("privacy")

        # Consent Updated events and TCF strings arrive with collected messages.
        from consent.ingest import consent_from_messages
        from profiles.ingest import hooks

        hooks.register(consent_from_messages)

        # A destination's answer to an erasure's deletion is written on the request.
        from cdphub.delivery import register_outcome_listener
        from consent.dsar import erasure_answer_log

        register_outcome_listener(erasure_answer_log)
