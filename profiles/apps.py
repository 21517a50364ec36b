from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Customer profiles (CDP)"

    def ready(self) -> None:
        # Each app's merges.py registers the rows that follow a profile merge.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("merges")
