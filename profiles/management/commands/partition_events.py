from django.core.management.base import BaseCommand

from profiles.eventstore import event_partitions, event_table_partitioned, events_partition


class Command(BaseCommand):
    help = (
        "Convert a plain event table (an installation older than partitioned events) into the "
        "partitioned layout, in batches, while the hub keeps collecting. Resumable."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, default=50_000, help="Events copied per transaction."
        )

    def handle(self, *args, batch_size, **options):
        if event_table_partitioned():
            self.stdout.write("the event table is partitioned already")
            return
        copied = events_partition(batch_size=batch_size, progress=self._progress)
        self.stdout.write(
            f"copied {copied:,} events; the event table now has "
            f"{len(event_partitions())} partitions and a default one"
        )

    def _progress(self, copied: int, total: int) -> None:
        self.stdout.write(f"  {copied:,} of about {total:,} events copied")
