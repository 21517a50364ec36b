from django.core.management.base import BaseCommand

from profiles.segments.computed import computed_traits_recompute_all, computed_traits_update


class Command(BaseCommand):
    help = "Recompute computed traits (LTV, orders, RFM, churn risk, event counts) from events."

    def add_arguments(self, parser):
        parser.add_argument(
            "--profile", type=int, action="append", help="Only this profile id (repeatable)."
        )
        parser.add_argument("--batch-size", type=int, help="Profiles per UPDATE statement.")

    def handle(self, *args, profile=None, batch_size=None, **options):
        if profile:
            changed = computed_traits_update(profile_ids=profile)
        else:
            changed = computed_traits_recompute_all(batch_size=batch_size)
        self.stdout.write(f"Computed traits changed for {changed} profiles.")
