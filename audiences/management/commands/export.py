import shutil

from django.core.management.base import BaseCommand, CommandError

from audiences.models import Audience, AudienceExport, JobStatus
from audiences.selectors import audience_visitors, segment_profiles
from audiences.services import audience_export
from profiles.models import Segment


class Command(BaseCommand):
    help = (
        "Export a CDP segment or a DMP audience for an ad platform: hashed e-mails and phones "
        "(google, meta) or plain cookie/device ids (ids). Only profiles with advertising "
        "consent; refused below CDPHUB_MIN_AUDIENCE_SIZE."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--segment", type=int, metavar="ID", help="A CDP segment id.")
        which.add_argument("--audience", type=int, metavar="ID", help="A DMP audience id.")
        parser.add_argument(
            "--destination", required=True, choices=AudienceExport.Destination.values
        )
        parser.add_argument("--out", required=True, metavar="FILE", help="Where to write the CSV.")

    def handle(self, *args, segment, audience, destination, out, **options):
        if segment is not None:
            found = Segment.objects.filter(pk=segment).first()
            if found is None:
                raise CommandError(f"There is no segment with id {segment}.")
            job = audience_export(
                destination=destination, profiles=segment_profiles(segment), segment=found
            )
        else:
            found = Audience.objects.filter(pk=audience).first()
            if found is None:
                raise CommandError(f"There is no audience with id {audience}.")
            job = audience_export(
                destination=destination, visitors=audience_visitors(audience), audience=found
            )
        if job.status != JobStatus.DONE:
            raise CommandError(f"Export #{job.pk} {job.status}: {job.message}")
        with job.file.open("rb") as source, open(out, "wb") as target:
            shutil.copyfileobj(source, target)
        self.stdout.write(
            f"Export #{job.pk}: {job.row_count} rows for {destination} written to {out}."
        )
