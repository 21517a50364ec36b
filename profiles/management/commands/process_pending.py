from django.core.management.base import BaseCommand

from profiles.ingest.processing import pending_process


class Command(BaseCommand):
    help = "Process every collected message waiting in the staging table (what the worker runs)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, default=None, help="Messages per transaction."
        )

    def handle(self, *args, batch_size=None, **options):
        processed = pending_process(batch_size=batch_size)
        self.stdout.write(f"processed {processed} messages")
