import time

from django.core.management.base import BaseCommand, CommandError

from cdphub.demo.seed import DEFAULT_SEED, MARKER_SOURCE, demo_data_seed


class Command(BaseCommand):
    help = (
        "Load realistic demo data into all four apps (profiles, events, CRM, DMP, consent). "
        "Does nothing when the demo data is already there."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--profiles", type=int, default=2000, help="Number of people (default 2000)."
        )
        parser.add_argument(
            "--seed", type=int, default=DEFAULT_SEED, help="Random seed: same seed, same data."
        )

    def handle(self, *args, profiles, seed, **options):
        if profiles < 1:
            raise CommandError("--profiles must be at least 1.")
        started = time.monotonic()
        counts = demo_data_seed(profiles=profiles, seed=seed)
        if not counts:
            self.stdout.write(
                f"Demo data already loaded (source {MARKER_SOURCE!r} exists): nothing to do."
            )
            return
        summary = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in counts.items())
        self.stdout.write(f"Demo data loaded in {time.monotonic() - started:.1f}s: {summary}.")
