from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from profiles.models import Source
from profiles.services import source_create


class Command(BaseCommand):
    help = "Create an event source and print its write key once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", default=Source.Kind.WEBSITE, choices=Source.Kind.values)

    def handle(self, *args, name, kind, **options):
        try:
            source, write_key = source_create(name=name, kind=kind)
        except IntegrityError as error:
            raise CommandError(f"a source named {name!r} already exists") from error
        self.stdout.write(f"Source {source.name!r} (id {source.pk}) write key:")
        self.stdout.write(write_key)
        self.stdout.write("Store it now: it cannot be shown again.")
